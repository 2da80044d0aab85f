//! Accounts and the audit log on every backend: SQLite in memory here, and
//! PostgreSQL when the environment names a server (else said SKIPPED).

use std::sync::Arc;
use std::time::Duration;

use super::accounts::{AccountError, Accounts};
use super::audit::{Action, AuditEvent, AuditFilter, AuditLog, Outcome, audit_message};
use super::{Access, Method, Role};
use crate::index::Index;
use crate::index::sql::now_ms;
use crate::index::tests::{ins, rec};

const DAY: Duration = Duration::from_secs(86_400);

async fn users_and_sessions(accounts: &dyn Accounts) {
    accounts
        .create_user("dr.aliya", Role::Reader, "correct horse battery")
        .await
        .unwrap();
    assert!(matches!(
        accounts
            .create_user("dr.aliya", Role::Admin, "another long secret")
            .await,
        Err(AccountError::Exists(_))
    ));
    for (name, password) in [
        ("bad name!", "long enough password"),
        ("", "long enough password"),
        ("short", "tooshort"),
    ] {
        assert!(matches!(
            accounts.create_user(name, Role::Reader, password).await,
            Err(AccountError::Invalid(_))
        ));
    }
    let users = accounts.users().await.unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!((users[0].role, users[0].disabled), (Role::Reader, false));

    assert!(
        accounts
            .login("dr.aliya", "wrong password!", DAY)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        accounts
            .login("nobody", "correct horse battery", DAY)
            .await
            .unwrap()
            .is_none()
    );
    let s = accounts
        .login("dr.aliya", "correct horse battery", DAY)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.principal.role, Role::Reader);
    assert_eq!(s.principal.method, Method::Session);
    assert_eq!((s.cookie.len(), s.csrf.len()), (64, 64));
    let (p, csrf) = accounts.session(&s.cookie).await.unwrap().unwrap();
    assert_eq!((p.name.as_str(), csrf), ("dr.aliya", s.csrf.clone()));
    assert!(accounts.session(&"0".repeat(64)).await.unwrap().is_none());
    assert!(accounts.session("short").await.unwrap().is_none());

    // A role change applies to live sessions.
    accounts.set_role("dr.aliya", Role::Admin).await.unwrap();
    assert_eq!(
        accounts.session(&s.cookie).await.unwrap().unwrap().0.role,
        Role::Admin
    );
    // Disabling ends sessions and refuses logins; enabling lets the user in.
    accounts.set_disabled("dr.aliya", true).await.unwrap();
    assert!(accounts.session(&s.cookie).await.unwrap().is_none());
    assert!(
        accounts
            .login("dr.aliya", "correct horse battery", DAY)
            .await
            .unwrap()
            .is_none()
    );
    accounts.set_disabled("dr.aliya", false).await.unwrap();
    let s = accounts
        .login("dr.aliya", "correct horse battery", DAY)
        .await
        .unwrap()
        .unwrap();
    // A new password ends the old sessions.
    accounts
        .set_password("dr.aliya", "a brand new passphrase")
        .await
        .unwrap();
    assert!(accounts.session(&s.cookie).await.unwrap().is_none());
    assert!(matches!(
        accounts
            .set_password("ghost", "a brand new passphrase")
            .await,
        Err(AccountError::NoSuchUser(_))
    ));
    // Logout ends the session; an expired one is gone too.
    let s = accounts
        .login("dr.aliya", "a brand new passphrase", DAY)
        .await
        .unwrap()
        .unwrap();
    accounts.logout(&s.cookie).await.unwrap();
    assert!(accounts.session(&s.cookie).await.unwrap().is_none());
    let s = accounts
        .login(
            "dr.aliya",
            "a brand new passphrase",
            Duration::from_millis(1),
        )
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        accounts.session(&s.cookie).await.unwrap().is_none(),
        "expired"
    );
}

async fn tokens(accounts: &dyn Accounts) {
    let a = accounts
        .create_token("cr-room-2", Role::Ingest, DAY)
        .await
        .unwrap();
    let b = accounts
        .create_token("ehr", Role::Clinician, 30 * DAY)
        .await
        .unwrap();
    let c = accounts
        .create_token("ehr", Role::Clinician, 30 * DAY)
        .await
        .unwrap();
    assert!(a.token.starts_with(&format!("aina_{}_", a.info.id)));
    let p = accounts.check_token(&a.token).await.unwrap().unwrap();
    assert_eq!(
        (p.name.as_str(), p.role, p.method),
        ("cr-room-2", Role::Ingest, Method::Token)
    );
    // Someone else's secret under this id, malformed tokens: nothing.
    let (_, b_secret) = b.token.rsplit_once('_').unwrap();
    for bad in [
        format!("aina_{}_{b_secret}", a.info.id),
        String::new(),
        "aina_".into(),
        "aina_x_y".into(),
        format!("{}0", a.token),
        a.token.to_uppercase(),
    ] {
        assert!(accounts.check_token(&bad).await.unwrap().is_none(), "{bad}");
    }
    for lifetime in [Duration::from_secs(3600), 6 * 366 * DAY] {
        assert!(matches!(
            accounts.create_token("x", Role::Reader, lifetime).await,
            Err(AccountError::Invalid(_))
        ));
    }
    assert!(matches!(
        accounts.create_token("", Role::Reader, DAY).await,
        Err(AccountError::Invalid(_))
    ));
    let listed = accounts.tokens().await.unwrap();
    assert_eq!(listed.len(), 3);
    assert!(
        listed
            .iter()
            .any(|t| t.id == a.info.id && t.last_used_at_ms.is_some())
    );
    // Revoked by id, by name (every token of that name), once.
    assert_eq!(accounts.revoke_token(&a.info.id).await.unwrap(), 1);
    assert!(accounts.check_token(&a.token).await.unwrap().is_none());
    assert_eq!(accounts.revoke_token("ehr").await.unwrap(), 2);
    assert_eq!(accounts.revoke_token("ehr").await.unwrap(), 0);
    assert!(accounts.check_token(&b.token).await.unwrap().is_none());
    assert!(accounts.check_token(&c.token).await.unwrap().is_none());
    assert!(
        accounts
            .tokens()
            .await
            .unwrap()
            .iter()
            .all(|t| t.revoked_at_ms.is_some())
    );
}

fn event(action: Action, study: Option<&str>, actor: &str) -> AuditEvent {
    AuditEvent {
        time_ms: now_ms(),
        actor: actor.to_owned(),
        role: Some(Role::Reader),
        method: Method::Token,
        source: "10.1.2.3".to_owned(),
        action,
        outcome: Outcome::Success,
        status: Some(200),
        patient_id: None,
        study_uid: study.map(str::to_owned),
        series_uid: None,
        sop_uid: None,
        detail: Some("GET /dicomweb/studies?PatientName=Ivanov*".to_owned()),
    }
}

async fn audit_log(index: &dyn Index, log: &dyn AuditLog) {
    ins(index, rec("1.2.3", "1.2.3.1", "1.2.3.1.1")).await;
    let mut refused = event(Action::Retrieve, Some("1.2.3"), "mallory");
    refused.outcome = Outcome::Refused;
    refused.status = Some(403);
    log.append(&[
        event(Action::Query, None, "dr.aliya"),
        event(Action::Retrieve, Some("1.2.3"), "dr.aliya"),
        refused,
        event(Action::Retrieve, Some("9.9.9"), "dr.aliya"),
    ])
    .await
    .unwrap();
    let all = log.search(&AuditFilter::default()).await.unwrap();
    assert_eq!(all.len(), 4);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(
        all[1].event.patient_id.as_deref(),
        Some("P1"),
        "filled from the study"
    );
    assert_eq!(all[3].event.patient_id, None, "unknown study");
    assert_eq!(all[1].event, {
        let mut e = event(Action::Retrieve, Some("1.2.3"), "dr.aliya");
        e.time_ms = all[1].event.time_ms;
        e.patient_id = Some("P1".into());
        e
    });
    let by = |f: AuditFilter| async move { log.search(&f).await.unwrap().len() };
    assert_eq!(
        by(AuditFilter {
            actor: Some("mallory".into()),
            ..Default::default()
        })
        .await,
        1
    );
    assert_eq!(
        by(AuditFilter {
            patient_id: Some("P1".into()),
            ..Default::default()
        })
        .await,
        2
    );
    assert_eq!(
        by(AuditFilter {
            study_uid: Some("1.2.3".into()),
            ..Default::default()
        })
        .await,
        2
    );
    assert_eq!(
        by(AuditFilter {
            action: Some(Action::Query),
            ..Default::default()
        })
        .await,
        1
    );
    assert_eq!(
        by(AuditFilter {
            outcome: Some(Outcome::Refused),
            ..Default::default()
        })
        .await,
        1
    );
    assert_eq!(
        by(AuditFilter {
            after: Some(all[1].seq),
            ..Default::default()
        })
        .await,
        2
    );
    assert_eq!(
        by(AuditFilter {
            limit: Some(3),
            ..Default::default()
        })
        .await,
        3
    );
    assert_eq!(
        by(AuditFilter {
            until_ms: Some(0),
            ..Default::default()
        })
        .await,
        0
    );
    assert_eq!(
        by(AuditFilter {
            since_ms: Some(0),
            ..Default::default()
        })
        .await,
        4
    );
    // Hostile values are values.
    assert_eq!(
        by(AuditFilter {
            actor: Some("' OR 1=1 --".into()),
            ..Default::default()
        })
        .await,
        0
    );
}

/// UPDATE, DELETE (and on PostgreSQL TRUNCATE) of audit events fail.
async fn append_only<DB: sqlx::Database>(pool: &sqlx::Pool<DB>)
where
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
    <DB as sqlx::Database>::Arguments: sqlx::IntoArguments<DB>,
{
    for statement in [
        "UPDATE audit_events SET actor = 'someone else'",
        "DELETE FROM audit_events",
    ] {
        let Err(err) = sqlx::query(statement).execute(pool).await else {
            panic!("{statement} succeeded on the audit log");
        };
        assert!(
            err.to_string().contains("append-only"),
            "{statement}: {err}"
        );
    }
}

#[test]
fn role_table() {
    use Access::*;
    let table = [
        (Role::Ingest, [true, true, true, false, false]),
        (Role::Reader, [true, true, true, true, false]),
        (Role::Clinician, [true, true, false, true, false]),
        (Role::Admin, [true, true, true, true, true]),
    ];
    for (role, expected) in table {
        let got = [Public, SignedIn, Store, Read, Admin].map(|a| role.grants(a));
        assert_eq!(got, expected, "{role}");
    }
    for role in Role::ALL {
        assert_eq!(role.as_str().parse::<Role>(), Ok(role));
    }
    assert!("root".parse::<Role>().is_err());
}

#[test]
fn audit_messages_are_dicom_xml() {
    let mut e = event(Action::Query, Some("1.2.3"), "dr.<aliya>&");
    e.patient_id = Some("KZ\"1".into());
    let xml = audit_message(&e, "AINA@pacs");
    assert!(!xml.contains('\n'), "one line");
    let mut reader = quick_xml::Reader::from_str(&xml);
    let mut names = Vec::new();
    loop {
        match reader.read_event().expect("well-formed XML") {
            quick_xml::events::Event::Eof => break,
            quick_xml::events::Event::Start(s) | quick_xml::events::Event::Empty(s) => {
                names.push(s.local_name().into_inner().to_owned());
            }
            _ => {}
        }
    }
    for required in [
        "AuditMessage",
        "EventIdentification",
        "EventID",
        "ActiveParticipant",
        "RoleIDCode",
        "AuditSourceIdentification",
        "ParticipantObjectIdentification",
        "ParticipantObjectQuery",
    ] {
        assert!(names.iter().any(|n| n == required), "{required} in {xml}");
    }
    assert!(xml.contains(r#"csd-code="110112""#), "Query: {xml}");
    assert!(xml.contains("dr.&lt;aliya&gt;&amp;") && xml.contains("KZ&quot;1"));
    let login = audit_message(&event(Action::LoginFailed, None, "x"), "AINA@pacs");
    assert!(login.contains(r#"csd-code="110114""#) && login.contains(r#"csd-code="110122""#));
}

#[test]
fn times_are_rfc3339() {
    assert_eq!(super::audit::rfc3339(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(
        super::audit::rfc3339(1_764_115_200_123),
        "2025-11-26T00:00:00.123Z"
    );
    assert_eq!(
        super::audit::rfc3339(951_782_400_000),
        "2000-02-29T00:00:00.000Z"
    );
}

mod sqlite {
    use super::*;
    use crate::index::sqlite::SqliteIndex;

    async fn open() -> Arc<SqliteIndex> {
        Arc::new(SqliteIndex::open("sqlite::memory:").await.unwrap())
    }

    #[tokio::test]
    async fn users_and_sessions() {
        super::users_and_sessions(open().await.as_ref()).await;
    }

    #[tokio::test]
    async fn tokens() {
        super::tokens(open().await.as_ref()).await;
    }

    #[tokio::test]
    async fn audit_log() {
        let db = open().await;
        super::audit_log(db.as_ref(), db.as_ref()).await;
        super::append_only(&db.writer).await;
    }

    #[tokio::test]
    async fn password_hashes_are_argon2id() {
        let db = open().await;
        db.create_user("u1", Role::Clinician, "long enough secret")
            .await
            .unwrap();
        let hash: String = sqlx::query_scalar("SELECT password_hash FROM users")
            .fetch_one(&db.writer)
            .await
            .unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(!hash.contains("long enough secret"));
    }
}

mod postgres {
    use super::*;
    use crate::index::postgres::PgIndex;
    use crate::testing::TestDatabase;

    async fn open(what: &str) -> Option<(Arc<PgIndex>, TestDatabase)> {
        let db = TestDatabase::create(what).await?;
        Some((Arc::new(PgIndex::open(db.url()).await.unwrap()), db))
    }

    #[tokio::test]
    async fn users_and_sessions() {
        let Some((index, _db)) = open("accounts").await else {
            return;
        };
        super::users_and_sessions(index.as_ref()).await;
    }

    #[tokio::test]
    async fn tokens() {
        let Some((index, _db)) = open("tokens").await else {
            return;
        };
        super::tokens(index.as_ref()).await;
    }

    #[tokio::test]
    async fn audit_log() {
        let Some((index, _db)) = open("audit log").await else {
            return;
        };
        super::audit_log(index.as_ref(), index.as_ref()).await;
        super::append_only(&index.writer).await;
        let Err(err) = sqlx::query("TRUNCATE audit_events")
            .execute(&index.writer)
            .await
        else {
            panic!("TRUNCATE succeeded on the audit log");
        };
        assert!(err.to_string().contains("append-only"), "{err}");
    }
}
