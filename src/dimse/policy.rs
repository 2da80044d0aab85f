//! Who may associate, and in which roles (PS3.8 §7.1.1, PS3.7 D.3.3.4).
//!
//! [`Callers`]: the called AE title must be ours; when an allow-list is
//! configured (`--dicom-allowed-caller AET[@CIDR]`), the calling AE title must
//! be on it (from an address in its range, if one is given) or be a configured
//! `--dicom-peer`. Refusals are A-ASSOCIATE-RJ (permanent, calling / called AE
//! title not recognised), logged here with the reason. Without an allow-list
//! any calling AE title is accepted.
//!
//! [`Roles`]: SCP/SCU role selection is accepted as proposed for storage SOP
//! classes, so that a C-GET SCU (dcmtk's `getscu`) can take the storage SCP role
//! on its own association; for any other SOP class the default roles stand.

use std::net::IpAddr;
use std::sync::Arc;

use dicom_ul::association::server::{AccessControl, Negotiation};
use dicom_ul::pdu::{AssociationRJServiceUserReason, RequestorRoles, UserIdentity};

use super::presentation::is_storage;
use crate::auth::audit::{Action, Audit, AuditEvent, Outcome};
use crate::auth::{Method, Role};
use crate::config::Config;

/// The access control of one incoming connection.
#[derive(Clone)]
pub struct Callers {
    pub config: Arc<Config>,
    /// The address the connection comes from.
    pub peer: IpAddr,
    /// Where refusals are recorded.
    pub audit: Audit,
}

/// What a caller that passed [`Callers`] may do: its allow-list entry's role
/// (the first entry matching its AE title and address); a `--dicom-peer` not
/// on the list reads and stores ([`Role::Reader`]); without an allow-list,
/// on loopback, anything.
pub fn role_of(config: &Config, calling: &str, peer: IpAddr) -> Role {
    if config.dicom_allowed_callers.is_empty() {
        return Role::Admin;
    }
    config
        .dicom_allowed_callers
        .iter()
        .find(|c| c.ae_title == calling && c.network.is_none_or(|n| n.contains(&peer)))
        .map_or(Role::Reader, |c| c.role)
}

impl Callers {
    /// Why `calling` may not associate from this address, if it may not.
    fn refusal(&self, calling: &str) -> Option<String> {
        let allowed = &self.config.dicom_allowed_callers;
        if allowed.is_empty() {
            return None;
        }
        let listed = allowed.iter().filter(|c| c.ae_title == calling);
        let mut any = false;
        for entry in listed {
            any = true;
            if entry.network.is_none_or(|n| n.contains(&self.peer)) {
                return None;
            }
        }
        if self
            .config
            .dicom_peers
            .iter()
            .any(|p| p.ae_title == calling)
        {
            return None;
        }
        Some(if any {
            "calling AE title not allowed from this address".to_owned()
        } else {
            "calling AE title not on the allow-list".to_owned()
        })
    }
}

impl AccessControl for Callers {
    fn check_access(
        &self,
        this_ae_title: &str,
        calling_ae_title: &str,
        called_ae_title: &str,
        _user_identity: Option<&UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        if this_ae_title != called_ae_title {
            tracing::warn!(peer = %self.peer, calling = calling_ae_title, called = called_ae_title, "association rejected: called AE title is not ours");
            let called: String = called_ae_title.chars().take(16).collect();
            self.refused(
                calling_ae_title,
                format!("called AE title {called:?} is not ours"),
            );
            return Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized);
        }
        if let Some(reason) = self.refusal(calling_ae_title) {
            tracing::warn!(peer = %self.peer, calling = calling_ae_title, reason, "association rejected");
            self.refused(calling_ae_title, reason);
            return Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized);
        }
        Ok(())
    }
}

impl Callers {
    /// Records a refused association under the AE title the caller claimed.
    /// Access control runs inside negotiation, which cannot wait: the event
    /// is queued without waiting.
    fn refused(&self, calling_ae_title: &str, reason: String) {
        self.audit.record_now(AuditEvent {
            time_ms: crate::index::sql::now_ms(),
            actor: calling_ae_title.chars().take(16).collect(),
            role: None,
            method: Method::Dicom,
            source: self.peer.to_string(),
            action: Action::AssociationRefused,
            outcome: Outcome::Refused,
            status: None,
            patient_id: None,
            study_uid: None,
            series_uid: None,
            sop_uid: None,
            detail: Some(format!("A-ASSOCIATE-RJ: {reason}")),
        });
    }
}

/// Role selection as described in the module documentation.
#[derive(Debug, Clone, Copy, Default)]
pub struct Roles;

impl Negotiation for Roles {
    fn negotiate_roles(
        &self,
        sop_class_uid: &str,
        scu_role: bool,
        scp_role: bool,
    ) -> Option<RequestorRoles> {
        is_storage(sop_class_uid).then_some(RequestorRoles {
            scu: scu_role,
            scp: scp_role,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn callers(allowed: &[&str], peer: &str) -> Callers {
        let config = Settings {
            dicom_allowed_caller: allowed.iter().map(|s| s.to_string()).collect(),
            dicom_peer: vec!["PACS2=10.9.9.9:104".into()],
            ..Default::default()
        }
        .resolve()
        .unwrap();
        Callers {
            config: Arc::new(config),
            peer: peer.parse().unwrap(),
            audit: Audit::detached(),
        }
    }

    #[test]
    fn allow_list_with_ranges() {
        let check = |c: &Callers, calling| c.check_access("AINA", calling, "AINA", None).is_ok();
        let open = callers(&[], "192.0.2.1");
        assert!(check(&open, "ANYONE"));
        assert!(open.check_access("AINA", "X", "OTHER", None).is_err());
        let c = callers(&["CR1@10.1.0.0/16", "WS"], "10.1.2.3");
        assert!(check(&c, "CR1") && check(&c, "WS") && check(&c, "PACS2"));
        assert!(!check(&c, "STRANGER"));
        let c = callers(&["CR1@10.1.0.0/16"], "10.2.0.1");
        assert!(!check(&c, "CR1"));
    }
}
