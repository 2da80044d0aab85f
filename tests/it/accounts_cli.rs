//! Users and API tokens from both ends an administrator has: the real `aina
//! user` / `aina token` commands (passwords from stdin or a file, never the
//! command line; a token printed once), checked against the archive's own
//! accounts, and the `/admin` HTTP routes on a server with authentication on.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use aina::auth::Role;
use aina::auth::accounts::Accounts;
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

use crate::common::{self, Backend, TestServer};

const DAY_MS: i64 = 86_400_000;

/// The result of one run of the binary.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `aina` on the backend's archive, with `stdin` as its standard input.
fn aina(backend: &Backend, args: &[&str], stdin: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_aina"))
        .args(args)
        .args(backend.args())
        .env("RUST_LOG", "warn")
        .env_remove("AINA_DATABASE_URL")
        .env_remove("AINA_STORAGE_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run aina");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `aina` and insists that it succeeded.
fn ok(backend: &Backend, args: &[&str], stdin: &str) -> Run {
    let run = aina(backend, args, stdin);
    assert_eq!(run.code, 0, "aina {args:?}: {}{}", run.stdout, run.stderr);
    run
}

/// Runs `aina` and insists that it failed, saying `why`.
fn refused(backend: &Backend, args: &[&str], stdin: &str, why: &str) {
    let run = aina(backend, args, stdin);
    assert_ne!(run.code, 0, "aina {args:?} should fail: {}", run.stdout);
    assert!(
        run.stderr.contains(why),
        "aina {args:?} should say {why:?}: {}",
        run.stderr
    );
}

/// The accounts of the backend's archive, opened as the server opens them.
async fn accounts(backend: &Backend) -> std::sync::Arc<dyn Accounts> {
    let url = match &backend.database {
        Some(d) => d.url().to_owned(),
        None => format!("sqlite://{}/index.db", backend.dir.path().display()),
    };
    aina::app::open_database(&url).await.unwrap().accounts
}

#[tokio::test]
async fn user_and_token_commands() {
    let data = Backend::new().await;
    let password_file = data.dir.path().join("password.txt");
    std::fs::write(&password_file, "correct horse battery\nnot part of it\n").unwrap();
    let password_file = password_file.to_str().unwrap();

    // Never a password on the command line; short ones are refused.
    refused(
        &data,
        &[
            "user",
            "add",
            "dr.aliya",
            "--role",
            "reader",
            "--password",
            "correct horse battery",
        ],
        "",
        "--password",
    );
    refused(
        &data,
        &["user", "add", "dr.aliya", "--role", "reader"],
        "short\n",
        "at least 10 characters",
    );
    refused(
        &data,
        &["user", "add", "dr.aliya", "--role", "reader"],
        "",
        "no password",
    );
    refused(
        &data,
        &["user", "add", "bad name", "--role", "reader"],
        "correct horse battery\n",
        "user name",
    );
    ok(
        &data,
        &[
            "user",
            "add",
            "dr.aliya",
            "--role",
            "reader",
            "--password-file",
            password_file,
        ],
        "",
    );
    refused(
        &data,
        &["user", "add", "dr.aliya", "--role", "admin"],
        "another long password\n",
        "already exists",
    );
    ok(
        &data,
        &["user", "add", "nurse.dana", "--role", "clinician"],
        "her own passphrase\n",
    );
    let list = ok(&data, &["user", "list"], "").stdout;
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    assert!(
        lines[0].starts_with("dr.aliya\treader\tenabled\t"),
        "{list}"
    );
    assert!(
        lines[1].starts_with("nurse.dana\tclinician\tenabled\t"),
        "{list}"
    );
    assert!(!list.contains("argon2"), "{list}");

    // What the commands wrote is what the server signs in with: the first line
    // of the file is the password, the second is not part of it.
    let accounts = accounts(&data).await;
    let day = Duration::from_secs(86_400);
    let login = |user: &'static str, password: &'static str| {
        let accounts = accounts.clone();
        async move { accounts.login(user, password, day).await.unwrap() }
    };
    let session = login("dr.aliya", "correct horse battery").await.unwrap();
    assert_eq!(session.principal.role, Role::Reader);
    assert!(
        login("dr.aliya", "correct horse battery\nnot part of it")
            .await
            .is_none()
    );
    assert!(login("nurse.dana", "her own passphrase").await.is_some());

    // passwd: the old password and the sessions opened with it are over.
    ok(
        &data,
        &["user", "passwd", "dr.aliya"],
        "a brand new passphrase\n",
    );
    assert!(login("dr.aliya", "correct horse battery").await.is_none());
    assert!(accounts.session(&session.cookie).await.unwrap().is_none());
    let session = login("dr.aliya", "a brand new passphrase").await.unwrap();
    refused(
        &data,
        &["user", "passwd", "ghost"],
        "a brand new passphrase\n",
        "ghost",
    );
    refused(
        &data,
        &["user", "passwd", "dr.aliya"],
        "too short\n",
        "at least 10",
    );

    // disable ends the session and refuses sign-in; enable lets the user back.
    ok(&data, &["user", "disable", "dr.aliya"], "");
    assert!(accounts.session(&session.cookie).await.unwrap().is_none());
    assert!(login("dr.aliya", "a brand new passphrase").await.is_none());
    assert!(
        ok(&data, &["user", "list"], "")
            .stdout
            .contains("dr.aliya\treader\tdisabled\t")
    );
    ok(&data, &["user", "enable", "dr.aliya"], "");
    assert!(login("dr.aliya", "a brand new passphrase").await.is_some());
    refused(&data, &["user", "disable", "ghost"], "", "ghost");

    // A token: on stdout alone, once; the notice on stderr.
    let created = ok(
        &data,
        &[
            "token",
            "create",
            "--name",
            "cr-room-2",
            "--role",
            "ingest",
            "--days",
            "30",
        ],
        "",
    );
    let token = created.stdout.trim_end_matches('\n');
    assert_eq!(created.stdout.lines().count(), 1, "{}", created.stdout);
    assert!(token.starts_with("aina_"), "{token}");
    assert!(created.stderr.contains("only"), "{}", created.stderr);
    assert!(!created.stderr.contains(token));
    let principal = accounts.check_token(token).await.unwrap().unwrap();
    assert_eq!(
        (principal.name.as_str(), principal.role),
        ("cr-room-2", Role::Ingest)
    );
    let info = accounts.tokens().await.unwrap().remove(0);
    assert_eq!(info.expires_at_ms - info.created_at_ms, 30 * DAY_MS);
    let default = ok(
        &data,
        &["token", "create", "--name", "ehr", "--role", "clinician"],
        "",
    );
    let default_token = default.stdout.trim().to_owned();
    let infos = accounts.tokens().await.unwrap();
    let ehr = infos.iter().find(|t| t.name == "ehr").unwrap();
    assert_eq!(ehr.expires_at_ms - ehr.created_at_ms, 365 * DAY_MS);
    for days in ["0", "5000"] {
        refused(
            &data,
            &[
                "token", "create", "--name", "x", "--role", "reader", "--days", days,
            ],
            "",
            "1 day to 5 years",
        );
    }

    let list = ok(&data, &["token", "list"], "").stdout;
    let secret = token.rsplit('_').next().unwrap();
    assert!(!list.contains(secret), "{list}");
    assert!(
        list.lines().any(
            |l| l.starts_with(&format!("{}\tcr-room-2\tingest\texpires ", info.id))
                && l.contains("last used")
        ),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.contains("\tehr\tclinician\t") && l.contains("never used")),
        "{list}"
    );

    // Revoked by id, then by name; nothing left to revoke is an error.
    ok(&data, &["token", "revoke", &info.id], "");
    assert!(accounts.check_token(token).await.unwrap().is_none());
    refused(&data, &["token", "revoke", &info.id], "", "no live token");
    assert!(
        accounts
            .check_token(&default_token)
            .await
            .unwrap()
            .is_some()
    );
    ok(&data, &["token", "revoke", "ehr"], "");
    assert!(
        accounts
            .check_token(&default_token)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        ok(&data, &["token", "list"], "")
            .stdout
            .lines()
            .filter(|l| l.contains("\trevoked "))
            .count(),
        2
    );
}

/// A request with an admin token; `body` as JSON when given.
async fn admin(
    server: &TestServer,
    token: &str,
    method: Method,
    path: String,
    body: Option<Value>,
) -> (StatusCode, String) {
    let mut req = server
        .client
        .request(method, format!("{}{path}", server.root))
        .bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.unwrap();
    (res.status(), res.text().await.unwrap())
}

async fn sign_in(server: &TestServer, user: &str, password: &str) -> StatusCode {
    server
        .client
        .post(format!("{}/auth/login", server.root))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn admin_routes_manage_users_and_tokens() {
    let server = common::start_with(|s| s.auth = Some(true)).await;
    let root_token = server
        .server
        .state
        .accounts
        .create_token("root", Role::Admin, Duration::from_secs(86_400))
        .await
        .unwrap()
        .token;
    let call = |method: Method, path: &str, body: Option<Value>| {
        admin(&server, &root_token, method, path.to_owned(), body)
    };

    // Users.
    let (status, body) = call(Method::GET, "/admin/users", None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "[]"));
    let aliya =
        json!({"username": "dr.aliya", "role": "reader", "password": "correct horse battery"});
    let (status, body) = call(Method::POST, "/admin/users", Some(aliya.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let created: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(created, json!({"username": "dr.aliya", "role": "reader"}));
    let (status, _) = call(Method::POST, "/admin/users", Some(aliya)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    for bad in [
        json!({"username": "x", "role": "reader", "password": "short"}),
        json!({"username": "bad name", "role": "reader", "password": "long enough password"}),
        json!({"username": "x", "role": "root", "password": "long enough password"}),
        json!({"username": "x", "role": "reader", "password": "long enough password", "admin": true}),
        json!({"username": "x", "role": "reader"}),
    ] {
        let (status, body) = call(Method::POST, "/admin/users", Some(bad.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let (_, body) = call(Method::GET, "/admin/users", None).await;
    let users: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(users.len(), 1, "{body}");
    assert_eq!(
        (
            &users[0]["username"],
            &users[0]["role"],
            &users[0]["disabled"]
        ),
        (&json!("dr.aliya"), &json!("reader"), &json!(false))
    );
    assert!(
        !body.contains("argon2") && !body.contains("password"),
        "{body}"
    );

    // Changes: role, then disabled (sign-in refused), then enabled with a new
    // password (only the new one signs in).
    let user = "/admin/users/dr.aliya";
    let (status, body) = call(Method::PATCH, user, Some(json!({"role": "admin"}))).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(
        sign_in(&server, "dr.aliya", "correct horse battery").await,
        StatusCode::OK
    );
    let (status, _) = call(Method::PATCH, user, Some(json!({"disabled": true}))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, body) = call(Method::GET, "/admin/users", None).await;
    let users: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (&users[0]["role"], &users[0]["disabled"]),
        (&json!("admin"), &json!(true))
    );
    assert_eq!(
        sign_in(&server, "dr.aliya", "correct horse battery").await,
        StatusCode::UNAUTHORIZED
    );
    let change = json!({"disabled": false, "password": "a brand new passphrase"});
    let (status, _) = call(Method::PATCH, user, Some(change)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        sign_in(&server, "dr.aliya", "a brand new passphrase").await,
        StatusCode::OK
    );
    for (path, change, expected) in [
        (
            "/admin/users/ghost",
            json!({"role": "reader"}),
            StatusCode::NOT_FOUND,
        ),
        (user, json!({}), StatusCode::BAD_REQUEST),
        (user, json!({"username": "other"}), StatusCode::BAD_REQUEST),
        (user, json!({"password": "short"}), StatusCode::BAD_REQUEST),
    ] {
        let (status, body) = call(Method::PATCH, path, Some(change.clone())).await;
        assert_eq!(status, expected, "{path} {change}: {body}");
    }
    assert_eq!(
        sign_in(&server, "dr.aliya", "a brand new passphrase").await,
        StatusCode::OK
    );

    // Tokens: created with the secret once, which then works for its role.
    let (status, body) = call(
        Method::POST,
        "/admin/tokens",
        Some(json!({"name": "ehr", "role": "clinician", "days": 30})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let ehr: Value = serde_json::from_str(&body).unwrap();
    let ehr_token = ehr["token"].as_str().unwrap().to_owned();
    assert!(ehr_token.starts_with(&format!("aina_{}_", ehr["id"].as_str().unwrap())));
    assert_eq!(
        (&ehr["name"], &ehr["role"]),
        (&json!("ehr"), &json!("clinician"))
    );
    assert_eq!(
        ehr["expires_at_ms"].as_i64().unwrap() - ehr["created_at_ms"].as_i64().unwrap(),
        30 * DAY_MS
    );
    let search = |token: String| {
        server
            .client
            .get(format!("{}/studies", server.dicomweb))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(
        search(ehr_token.clone()).await.unwrap().status(),
        StatusCode::OK
    );
    let (status, body) = call(
        Method::POST,
        "/admin/tokens",
        Some(json!({"name": "ehr", "role": "clinician"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let second: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        second["expires_at_ms"].as_i64().unwrap() - second["created_at_ms"].as_i64().unwrap(),
        365 * DAY_MS,
        "a year unless said"
    );
    for bad in [
        json!({"name": "x", "role": "reader", "days": 0}),
        json!({"name": "x", "role": "reader", "days": 5000}),
        json!({"name": "", "role": "reader"}),
        json!({"name": "x", "role": "reader", "secret": "mine"}),
    ] {
        let (status, body) = call(Method::POST, "/admin/tokens", Some(bad.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let (status, body) = call(Method::GET, "/admin/tokens", None).await;
    assert_eq!(status, StatusCode::OK);
    let listed: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(listed.len(), 3, "root and two ehr: {body}");
    assert!(listed.iter().all(|t| t.get("token").is_none()), "{body}");
    assert!(!body.contains(ehr_token.rsplit('_').next().unwrap()));

    // Revoked by id, then by name; nothing left is 404.
    let by_id = format!("/admin/tokens/{}", ehr["id"].as_str().unwrap());
    let (status, _) = call(Method::DELETE, &by_id, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        search(ehr_token).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let (status, _) = call(Method::DELETE, &by_id, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let second_token = second["token"].as_str().unwrap().to_owned();
    assert_eq!(
        search(second_token.clone()).await.unwrap().status(),
        StatusCode::OK
    );
    let (status, _) = call(Method::DELETE, "/admin/tokens/ehr", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        search(second_token).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let (status, _) = call(Method::DELETE, "/admin/tokens/ehr", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let res = server
        .client
        .get(format!("{}/admin/users", server.root))
        .header(header::AUTHORIZATION, format!("Bearer {root_token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "the admin's own token still works"
    );
}
