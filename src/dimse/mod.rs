//! DIMSE: the DICOM listener on `config.dicom` for modalities and workstations
//! (PS3.7 message exchange over the PS3.8 upper layer, dicom-ul's async
//! association).
//!
//! Served: Verification (C-ECHO), Storage (C-STORE into the one ingest path, any
//! storage SOP class and transfer syntax of [`presentation`]), Query (C-FIND,
//! Patient Root and Study Root, PATIENT to IMAGE, with C-CANCEL), Retrieve
//! (C-MOVE to configured peers and C-GET, [`retrieve`], sending with the C-STORE
//! SCU of [`scu`], which `aina send` uses too). Each association runs in its own
//! task; at most [`MAX_ASSOCIATIONS`] at once (more are rejected with
//! A-ASSOCIATE-RJ "local limit exceeded"), each ended after [`IDLE_TIMEOUT`]
//! without a PDU. Who may associate is [`policy`]'s.
//!
//! Left out (docs/dimse.md says what is planned): storage commitment, and
//! settings for the limits and timeouts.

mod association;
pub mod find;
pub mod message;
pub mod policy;
pub mod presentation;
pub mod retrieve;
pub mod scu;
pub mod status;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use dicom_ul::association::read_pdu_from_wire_async;
use dicom_ul::association::server::AcceptAny;
use dicom_ul::pdu::{
    AssociationRJ, AssociationRJResult, AssociationRJServiceProviderPresentationReason,
    AssociationRJSource, Pdu,
};
use dicom_ul::{ServerAssociationOptions, write_pdu};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::app::AppState;
use policy::{Callers, Roles};

/// Associations served at once; more are turned away until one ends.
pub const MAX_ASSOCIATIONS: usize = 64;
/// An association that sends nothing for this long is aborted (a modality
/// that has crashed half-way must not hold a slot for ever).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// A peer that takes no data for this long is given up on.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest PDU we accept (PS3.8 D.1 Maximum Length): big enough that large
/// images cross in few PDUs, small enough to bound what one read buffers.
pub const MAX_PDU_LENGTH: u32 = 256 * 1024;
/// The largest PDU we send, whatever the peer accepts.
const MAX_SEND_PDU: u32 = 256 * 1024;

/// The association options every association is negotiated with, before the
/// access control of its connection is added.
type BaseOptions = ServerAssociationOptions<'static, AcceptAny, Roles>;
/// The options of one connection.
type Options = ServerAssociationOptions<'static, Callers, Roles>;

fn options(ae_title: &str) -> BaseOptions {
    let mut options = ServerAssociationOptions::new()
        .accept_any()
        .with_negotiation(Roles)
        .ae_title(ae_title.to_owned())
        .max_pdu_length(MAX_PDU_LENGTH)
        .read_timeout(IDLE_TIMEOUT)
        .write_timeout(WRITE_TIMEOUT);
    for uid in presentation::abstract_syntaxes() {
        options = options.with_abstract_syntax(uid);
    }
    for uid in presentation::TRANSFER_SYNTAXES {
        options = options.with_transfer_syntax(*uid);
    }
    options
}

/// Accepts associations on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, state: AppState) {
    let options = Arc::new(options(&state.config.ae_title));
    let slots = Arc::new(Semaphore::new(MAX_ASSOCIATIONS));
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, say: wait rather than spin.
                tracing::warn!(error = %e, "DICOM accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                // Cloning the options copies pointers to static UIDs: cheap.
                let options = options.as_ref().clone().ae_access_control(Callers {
                    config: state.config.clone(),
                    peer: peer.ip(),
                });
                let state = state.clone();
                tokio::spawn(async move {
                    association::run(socket, peer, &options, state).await;
                    drop(slot);
                });
            }
            Err(_) => {
                tokio::spawn(reject_busy(socket, peer));
            }
        }
    }
}

/// Turns a connection away with A-ASSOCIATE-RJ, transient, "local limit
/// exceeded" (PS3.8 §9.3.4), so that the peer retries later.
async fn reject_busy(mut socket: TcpStream, peer: SocketAddr) {
    let mut buffer = BytesMut::new();
    let request = tokio::time::timeout(
        Duration::from_secs(10),
        read_pdu_from_wire_async(&mut socket, &mut buffer, MAX_PDU_LENGTH, true),
    )
    .await;
    if !matches!(request, Ok(Ok(Pdu::AssociationRQ(_)))) {
        return;
    }
    let reject = Pdu::AssociationRJ(AssociationRJ {
        result: AssociationRJResult::Transient,
        source: AssociationRJSource::ServiceProviderPresentation(
            AssociationRJServiceProviderPresentationReason::LocalLimitExceeded,
        ),
    });
    let mut out = Vec::new();
    if write_pdu(&mut out, &reject).is_ok() {
        let _ = socket.write_all(&out).await;
    }
    tracing::warn!(%peer, max = MAX_ASSOCIATIONS, "association rejected: too many at once");
}
