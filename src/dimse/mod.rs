//! DIMSE: the DICOM listener on `config.dicom` for modalities and workstations
//! (PS3.7 message exchange over the PS3.8 upper layer, dicom-ul's async
//! association), and the same service over TLS on `config.dicom_tls` (PS3.15
//! B.1; certificates from [`crate::tls`]).
//!
//! Served: Verification (C-ECHO), Storage (C-STORE into the one ingest path, any
//! storage SOP class and transfer syntax of [`presentation`]), Query (C-FIND,
//! Patient Root and Study Root, PATIENT to IMAGE, with C-CANCEL), Retrieve
//! (C-MOVE to configured peers and C-GET, [`retrieve`], sending with the C-STORE
//! SCU of [`scu`], which `aina send` uses too), Storage Commitment Push Model
//! ([`commitment`]). Each association runs in its own
//! task; at most `--dicom-max-associations` at once over the plain and the TLS
//! port together (more are rejected with A-ASSOCIATE-RJ "local limit
//! exceeded"; on the TLS port the connection is closed), each given
//! `--dicom-association-timeout-secs` to negotiate and ended after
//! `--dicom-idle-timeout-secs` without a PDU. Who may associate is [`policy`]'s.
//!
//! Left out: see docs/dimse.md, "Not done yet".

mod association;
pub mod commitment;
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
use crate::config::Config;
use policy::{Callers, Roles};

/// How long the SCU (C-MOVE, `aina send`) waits for a silent peer; the
/// listener's idle timeout is `config.dicom_idle_timeout`.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// A peer that takes no data for this long is given up on.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest PDU the SCU accepts (PS3.8 D.1 Maximum Length): big enough that
/// large images cross in few PDUs, small enough to bound what one read buffers.
/// The listener's is `config.dicom_max_pdu`.
pub const MAX_PDU_LENGTH: u32 = 256 * 1024;
/// The largest PDU we send, whatever the peer accepts.
const MAX_SEND_PDU: u32 = 256 * 1024;

/// The association options every association is negotiated with, before the
/// access control of its connection is added.
type BaseOptions = ServerAssociationOptions<'static, AcceptAny, Roles>;
/// The options of one connection.
type Options = ServerAssociationOptions<'static, Callers, Roles>;

fn options(config: &Config) -> BaseOptions {
    let mut options = ServerAssociationOptions::new()
        .accept_any()
        .with_negotiation(Roles)
        .ae_title(config.ae_title.clone())
        .max_pdu_length(config.dicom_max_pdu)
        .read_timeout(config.dicom_idle_timeout)
        .write_timeout(WRITE_TIMEOUT);
    for uid in presentation::abstract_syntaxes() {
        options = options.with_abstract_syntax(uid);
    }
    for uid in presentation::TRANSFER_SYNTAXES {
        options = options.with_transfer_syntax(*uid);
    }
    options
}

/// The association slots the DICOM listeners share: at most
/// `--dicom-max-associations` over the plain and the TLS port together.
pub fn association_slots(config: &Config) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(config.dicom_max_associations))
}

/// Accepts associations on `listener` until the task is dropped, each holding
/// one of `slots`; in TLS when `tls` is given (its current configuration at
/// each handshake, so a reload applies to new associations).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    tls: Option<Arc<arc_swap::ArcSwap<rustls::ServerConfig>>>,
    slots: Arc<Semaphore>,
) {
    let options = Arc::new(options(&state.config));
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
                let mut options = options.as_ref().clone().ae_access_control(Callers {
                    config: state.config.clone(),
                    peer: peer.ip(),
                    audit: state.audit.clone(),
                });
                if let Some(tls) = &tls {
                    options = options.tls_config(tls.load_full());
                }
                let state = state.clone();
                let is_tls = tls.is_some();
                tokio::spawn(async move {
                    association::run(socket, peer, &options, state, is_tls).await;
                    drop(slot);
                });
            }
            Err(_) if tls.is_some() => {
                // A-ASSOCIATE-RJ would need a TLS session first (a handshake
                // the limit is there to spare): the connection is closed.
                tracing::warn!(
                    %peer,
                    max = state.config.dicom_max_associations,
                    "DICOM TLS connection closed: too many associations at once"
                );
            }
            Err(_) => {
                tokio::spawn(reject_busy(socket, peer, state.config.clone()));
            }
        }
    }
}

/// Turns a connection away with A-ASSOCIATE-RJ, transient, "local limit
/// exceeded" (PS3.8 §9.3.4), so that the peer retries later.
async fn reject_busy(mut socket: TcpStream, peer: SocketAddr, config: Arc<Config>) {
    let mut buffer = BytesMut::new();
    let request = tokio::time::timeout(
        config.dicom_association_timeout,
        read_pdu_from_wire_async(&mut socket, &mut buffer, config.dicom_max_pdu, true),
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
    tracing::warn!(
        %peer,
        max = config.dicom_max_associations,
        "association rejected: too many at once"
    );
}
