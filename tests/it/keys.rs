//! Signing keys against the real registry 2.8: a rotation without downtime (prepare, restart the
//! registry with the new bundle, promote, finish once old tokens expired), a rotation that
//! changes the algorithm, an emergency rotation, and the JWKS a server serves.

use std::process::Command;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};

use crate::support::binary::{Portcullis, ISSUER, SERVICE};
use crate::support::http;
use crate::support::oci::make_oci_layout;
use crate::support::process::{require_binary, run};
use crate::support::registry::Registry;
use crate::support::skopeo::Skopeo;

const PULL: &str = "repository:team/app:pull";

/// A token for dev, and the kid in its header.
fn token(portcullis: &Portcullis) -> (String, String) {
    let answer = portcullis.token(&format!("service={SERVICE}&scope={PULL}"), Some(("dev", "dev-pw")));
    assert_eq!(answer.status, 200, "{answer:?}");
    let kid = answer.token_header()["kid"].as_str().expect("a kid").to_string();
    (answer.json()["token"].as_str().unwrap().to_string(), kid)
}

/// What the registry answers to a manifest read with `token`.
fn registry_status(registry: &Registry, token: &str) -> u16 {
    let authorization = format!("Bearer {token}");
    let headers =
        [("Authorization", authorization.as_str()), ("Accept", "application/vnd.oci.image.manifest.v1+json")];
    http::request(registry.addr(), "GET", "/v2/team/app/manifests/v1", &headers, b"").status
}

/// The keys as `key list --json` shows them: (state, kid).
fn keys(portcullis: &Portcullis) -> Vec<(String, String)> {
    let listed = portcullis.json(&["key", "list", "--json"]);
    listed
        .as_array()
        .unwrap()
        .iter()
        .map(|key| (key["state"].as_str().unwrap().to_string(), key["kid"].as_str().unwrap().to_string()))
        .collect()
}

/// A server with dev (developer of team), `team/app:v1` pushed, and a registry trusting it.
fn stack(expires_in: &str) -> (Portcullis, Registry) {
    stack_with(&[("PORTCULLIS_TOKEN__EXPIRES_IN", expires_in)])
}

/// [`stack`] with other settings.
fn stack_with(settings: &[(&str, &str)]) -> (Portcullis, Registry) {
    let portcullis = Portcullis::start_with(settings);
    portcullis.create_project("team", false);
    portcullis.add_user("dev", "dev-pw");
    portcullis.add_member("team", "dev", "developer");
    let registry = Registry::start(portcullis.token_auth());
    let layout = tempfile::tempdir().unwrap();
    make_oci_layout(layout.path(), "latest", "rotated");
    let image = format!("docker://{}/team/app:v1", registry.addr());
    let pushed = Skopeo::new().copy(
        &format!("oci:{}:latest", layout.path().display()),
        &image,
        Some(("dev", "dev-pw")),
    );
    assert!(pushed.success(), "push:\n{pushed}\n{}", registry.log());
    (portcullis, registry)
}

/// A token for dev signed with a stored key the test read from the database (the private key
/// of a retired key, as someone who kept it would), with the usual header.
fn forged_with(private_key: &str, certificate: &str, kid: &str) -> String {
    let der: String = certificate.lines().filter(|line| !line.starts_with("-----")).collect();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(kid.to_string());
    header.x5c = Some(vec![STANDARD.encode(STANDARD.decode(der).unwrap())]);
    let now = portcullis_now();
    let claims = json!({
        "iss": ISSUER, "sub": "dev", "aud": SERVICE, "exp": now + 300, "nbf": now - 10, "iat": now,
        "jti": "forged", "access": [{"type": "repository", "name": "team/app", "actions": ["pull"]}]
    });
    let key = jsonwebtoken::EncodingKey::from_ec_pem(private_key.as_bytes()).expect("the stored key");
    jsonwebtoken::encode(&header, &claims, &key).expect("sign")
}

fn portcullis_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// One column of the retired key's row, read with sqlite3.
fn retired_column(portcullis: &Portcullis, column: &str) -> String {
    let sqlite3 = require_binary("sqlite3", "sqlite3");
    let database = portcullis.data_dir().join("portcullis.db");
    let query = format!("SELECT {column} FROM signing_keys WHERE state = 'retired'");
    let output = run(Command::new(&sqlite3).arg(&database).arg(query), None);
    output.assert_success();
    output.stdout.trim_end().to_string() + "\n"
}

#[test]
fn a_rotation_keeps_every_token_working_and_ends_trusting_only_the_new_key() {
    // The shortest lifetime, so that finishing waits only expires_in + 60 s + 10 s of skew.
    let (portcullis, mut registry) = stack("60");
    let (old_token, old_kid) = token(&portcullis);
    assert_eq!(registry_status(&registry, &old_token), 200);
    assert_eq!(keys(&portcullis), [("current".to_string(), old_kid.clone())]);

    // Prepare, changing the algorithm too; the registry trusts both after its restart.
    let prepared = portcullis.ok(&["key", "rotate", "prepare", "--algorithm", "RS256"]);
    assert!(prepared.contains("restart"), "{prepared}");
    let listed = keys(&portcullis);
    assert_eq!(listed.len(), 2, "{listed:?}");
    let new_kid = listed.iter().find(|(state, _)| state == "next").map(|(_, kid)| kid.clone()).unwrap();
    let bundle = std::fs::read_to_string(portcullis.certificate_path()).unwrap();
    assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 2, "{bundle}");
    let jwks = portcullis.request("GET", "/.well-known/jwks.json", &[], b"").json();
    let kids: Vec<&str> =
        jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids.len(), 4, "each key under its libtrust kid and its thumbprint: {kids:?}");
    assert!(kids.contains(&old_kid.as_str()) && kids.contains(&new_kid.as_str()), "{kids:?}");
    assert_eq!(token(&portcullis).1, old_kid, "the next key does not sign yet");
    assert!(portcullis.fails(&["key", "rotate", "prepare"]).contains("already"));
    registry.restart();
    assert_eq!(registry_status(&registry, &old_token), 200, "a token of the old key still works");

    // Promote: the running server signs with the new key from its next request, no signal.
    let promoted = portcullis.ok(&["key", "rotate", "promote"]);
    assert!(promoted.contains(&new_kid), "{promoted}");
    let promoted_at = Instant::now();
    let (new_token, kid) = token(&portcullis);
    assert_eq!(kid, new_kid);
    let header =
        portcullis.token(&format!("service={SERVICE}&scope={PULL}"), Some(("dev", "dev-pw"))).token_header();
    assert_eq!(header["alg"], "RS256");
    assert_eq!(registry_status(&registry, &new_token), 200, "{}", registry.log());
    assert_eq!(registry_status(&registry, &old_token), 200, "old tokens keep working while retired");
    let pulled = tempfile::tempdir().unwrap();
    let copy = format!("oci:{}:copy", pulled.path().display());
    let image = format!("docker://{}/team/app:v1", registry.addr());
    Skopeo::new().copy(&image, &copy, Some(("dev", "dev-pw"))).assert_success();

    // Finish is refused until no token of the old key can be valid: 60 s + 60 s of leeway.
    let refused = portcullis.fails(&["key", "rotate", "finish"]);
    assert!(refused.contains("may still be valid"), "{refused}");
    let old_private = retired_column(&portcullis, "private_key");
    let old_certificate = retired_column(&portcullis, "certificate");
    let deadline = promoted_at + Duration::from_secs(165);
    loop {
        let finish = portcullis.cli(&["key", "rotate", "finish"], None);
        if finish.success() {
            assert!(promoted_at.elapsed() >= Duration::from_secs(125), "finished too early: {finish}");
            break;
        }
        assert!(Instant::now() < deadline, "finish still refused: {finish}");
        std::thread::sleep(Duration::from_secs(3));
    }
    assert_eq!(keys(&portcullis), [("current".to_string(), new_kid.clone())]);
    let bundle = std::fs::read_to_string(portcullis.certificate_path()).unwrap();
    assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 1);

    // The registry restarted with the new bundle: the new key works, the old one is refused even
    // for a token that has not expired.
    registry.restart();
    assert_eq!(registry_status(&registry, &token(&portcullis).0), 200);
    let forged = forged_with(&old_private, &old_certificate, &old_kid);
    assert_eq!(registry_status(&registry, &forged), 401, "the dropped key is not trusted");
    assert!(
        registry.log().contains("unable to verify certificate chain") || registry.log().contains("untrusted"),
        "{}",
        registry.log()
    );
    let changes = portcullis.json(&["audit", "list", "--kind", "change", "--json"]);
    let actions: Vec<&str> =
        changes.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(
        actions.starts_with(&["key.rotate.finish", "key.rotate.promote", "key.rotate.prepare"]),
        "{actions:?}"
    );
}

#[test]
fn an_emergency_rotation_stops_trusting_the_old_key_at_the_registrys_restart() {
    let (portcullis, mut registry) = stack("300");
    let (old_token, old_kid) = token(&portcullis);
    let done = portcullis.ok(&["key", "rotate", "promote", "--emergency"]);
    assert!(done.contains("EMERGENCY"), "{done}");
    let listed = keys(&portcullis);
    assert_eq!(listed.len(), 1, "only the new key: {listed:?}");
    let (new_token, new_kid) = token(&portcullis);
    assert_ne!(new_kid, old_kid);
    assert_eq!(listed[0], ("current".to_string(), new_kid));
    // Until the registry restarts it knows only the old key: new tokens fail, which is the
    // documented price of an emergency.
    assert_eq!(registry_status(&registry, &new_token), 401);
    registry.restart();
    assert_eq!(registry_status(&registry, &new_token), 200, "{}", registry.log());
    assert_eq!(registry_status(&registry, &old_token), 401, "the leaked key's tokens are refused");
    // key generate --force is the same emergency; without it, a second key is refused.
    assert!(portcullis.fails(&["key", "generate"]).contains("rotate"));
}

#[test]
fn keys_are_listed_and_published_as_jwks_with_the_header_kid() {
    let portcullis = Portcullis::start_with(&[
        ("PORTCULLIS_TOKEN__KEY_ID", "thumbprint"),
        ("PORTCULLIS_TOKEN__X5C", "false"),
    ]);
    portcullis.add_user("dev", "dev-pw");
    let answer = portcullis.token(&format!("service={SERVICE}"), Some(("dev", "dev-pw")));
    let header = answer.token_header();
    assert!(header.get("x5c").is_none(), "{header}");
    let listed = portcullis.json(&["key", "list", "--json"]);
    let key = &listed[0];
    assert_eq!(header["kid"], key["thumbprint"], "the kid is the thumbprint");
    assert_eq!(key["kid"], key["thumbprint"]);
    assert_ne!(key["libtrust_kid"], key["thumbprint"]);
    for field in ["created_at", "not_after"] {
        assert!(key[field].as_i64().is_some(), "{field}: {key}");
    }
    let served: Value = portcullis.request("GET", "/.well-known/jwks.json", &[], b"").json();
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(portcullis.data_dir().join("jwks.json")).unwrap())
            .unwrap();
    let printed: Value = serde_json::from_str(&portcullis.ok(&["key", "jwks"])).unwrap();
    assert_eq!(served, written);
    assert_eq!(served, printed);
    let entries = served["keys"].as_array().unwrap();
    let jwk = entries.iter().find(|jwk| jwk["kid"] == header["kid"]).expect("the header's kid");
    assert_eq!((jwk["kty"].as_str(), jwk["crv"].as_str()), (Some("EC"), Some("P-256")));
    assert!(entries.iter().any(|jwk| jwk["kid"] == key["libtrust_kid"]), "both names: {served}");
    assert_eq!(URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap().len(), 32, "padded coordinates");

    // The auth block for each registry version; 3.x pins the algorithms.
    let v2 = portcullis.ok(&["registry-config"]);
    assert!(
        v2.contains("rootcertbundle:") && !v2.contains("jwks:") && !v2.contains("signingalgorithms"),
        "{v2}"
    );
    let v3 = portcullis.ok(&["registry-config", "--registry-version", "3", "--jwks"]);
    assert!(
        v3.contains("jwks:") && !v3.contains("rootcertbundle") && v3.contains("signingalgorithms: [ES256]"),
        "{v3}"
    );
    let both = portcullis.ok(&["registry-config", "--registry-version", "3", "--jwks", "--bundle"]);
    assert!(both.contains("jwks:") && both.contains("rootcertbundle:"), "{both}");
    assert!(portcullis.fails(&["registry-config", "--jwks"]).contains("2.8"));
}

/// Makes the server's bundle path something no file can be written to (a directory) and gives
/// the settings under which the CLI writes its files elsewhere: (the server's bundle path, the
/// dir the CLI writes to, the settings).
fn unwritable_bundle(
    portcullis: &Portcullis,
) -> (std::path::PathBuf, tempfile::TempDir, [(&'static str, String); 2]) {
    let bundle = portcullis.certificate_path();
    std::fs::remove_file(&bundle).unwrap();
    std::fs::create_dir(&bundle).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let settings = [
        ("PORTCULLIS_TOKEN__CERTIFICATE_FILE", elsewhere.path().join("token.pem").display().to_string()),
        ("PORTCULLIS_TOKEN__JWKS_FILE", elsewhere.path().join("jwks.json").display().to_string()),
    ];
    (bundle, elsewhere, settings)
}

/// A server that cannot write its bundle keeps signing with the key its bundle holds: it never
/// signs with a key the registry's file lacks.
#[test]
fn a_server_signs_only_with_a_key_its_bundle_holds() {
    let portcullis = Portcullis::start();
    portcullis.add_user("dev", "dev-pw");
    let (_, old_kid) = token(&portcullis);
    let (bundle, _elsewhere, settings) = unwritable_bundle(&portcullis);
    portcullis.cli_with(&settings, &["key", "rotate", "prepare"], None).assert_success();
    portcullis.cli_with(&settings, &["key", "rotate", "promote"], None).assert_success();
    let (_, kid) = token(&portcullis);
    assert_eq!(kid, old_kid, "still the key its bundle holds");
    portcullis.wait_for_log("the new signing keys cannot be used; signing with the previous key");

    // Its bundle writable again, the keys are taken up at the next try (every 5 s).
    std::fs::remove_dir(&bundle).unwrap();
    std::thread::sleep(Duration::from_millis(5_500));
    let (_, kid) = token(&portcullis);
    assert_ne!(kid, old_kid, "the promoted key signs once the bundle holds it");
    assert!(std::fs::read_to_string(&bundle).unwrap().matches("BEGIN CERTIFICATE").count() >= 2);
}

/// A server that cannot take up an emergency rotation stops signing with the withdrawn key
/// (503, and /readyz says why) and takes the new keys up by itself once it can.
#[test]
fn a_withdrawn_key_stops_signing_until_the_new_keys_can_be_used() {
    let portcullis = Portcullis::start();
    portcullis.add_user("dev", "dev-pw");
    let (_, old_kid) = token(&portcullis);
    let (bundle, _elsewhere, settings) = unwritable_bundle(&portcullis);
    portcullis.cli_with(&settings, &["key", "rotate", "promote", "--emergency"], None).assert_success();
    let refused = portcullis.token(&format!("service={SERVICE}"), Some(("dev", "dev-pw")));
    assert_eq!(refused.status, 503, "never the withdrawn key: {refused:?}");
    let ready = portcullis.request("GET", "/readyz", &[], b"");
    assert_eq!(ready.status, 503);
    assert!(ready.json()["signing_key"].as_str().unwrap().contains("withdrawn"), "{ready:?}");

    // Fixed, the server recovers by itself, through its readiness probe alone (a pod out of
    // its Service gets no token requests).
    std::fs::remove_dir(&bundle).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while portcullis.request("GET", "/readyz", &[], b"").status != 200 {
        assert!(std::time::Instant::now() < deadline, "still unready: {}", portcullis.log());
        std::thread::sleep(Duration::from_millis(500));
    }
    let (_, kid) = token(&portcullis);
    assert_ne!(kid, old_kid, "the new key, taken up without a signal");
}

/// A data dir of a version that kept its key in files: every key command imports it first (the
/// same kid), `generate --force` never does, and a corrupt prepared key can be dropped.
#[test]
fn an_older_key_file_is_imported_once_and_never_by_force() {
    let sqlite3 = require_binary("sqlite3", "sqlite3");
    let admin = crate::support::binary::Admin::new();
    let database = admin.data_dir().join("portcullis.db");
    let column = |name: &str| {
        let output =
            run(Command::new(&sqlite3).arg(&database).arg(format!("SELECT {name} FROM signing_keys")), None);
        output.assert_success();
        output.stdout.trim_end().to_string() + "\n"
    };
    // As an older version left it: the key in token.key, the certificate in token.pem.
    let kid = admin.json(&["key", "list", "--json"])[0]["kid"].as_str().unwrap().to_string();
    std::fs::write(admin.data_dir().join("token.key"), column("private_key")).unwrap();
    std::fs::write(admin.data_dir().join("token.pem"), column("certificate")).unwrap();
    run(Command::new(&sqlite3).arg(&database).arg("DELETE FROM signing_keys"), None).assert_success();

    admin.ok(&["key", "rotate", "prepare"]);
    let listed = admin.json(&["key", "list", "--json"]);
    assert_eq!(listed[0]["kid"], kid.as_str(), "imported as the current key: {listed}");
    assert_eq!(listed[1]["state"], "next");

    // A prepared key that got corrupted does not stop anything and can be dropped.
    run(
        Command::new(&sqlite3)
            .arg(&database)
            .arg("UPDATE signing_keys SET private_key = 'garbage' WHERE state = 'next'"),
        None,
    )
    .assert_success();
    let listing = admin.cli(&["key", "list"], None);
    assert!(listing.assert_success().stderr.contains("does not parse"), "{listing}");
    admin.ok(&["key", "rotate", "cancel"]);
    assert_eq!(admin.json(&["key", "list", "--json"]).as_array().unwrap().len(), 1);
    // Nor does a corrupt prepared key stop an emergency.
    admin.ok(&["key", "rotate", "prepare"]);
    let corrupt = "UPDATE signing_keys SET private_key = 'garbage' WHERE state = 'next'";
    run(Command::new(&sqlite3).arg(&database).arg(corrupt), None).assert_success();
    admin.ok(&["key", "rotate", "promote", "--emergency"]);
    assert_eq!(admin.json(&["key", "list", "--json"]).as_array().unwrap().len(), 1);

    // --force on such a data dir makes a new key, whatever the old file says.
    run(Command::new(&sqlite3).arg(&database).arg("DELETE FROM signing_keys"), None).assert_success();
    let forced = admin.ok(&["key", "generate", "--force", "--algorithm", "RS256"]);
    assert!(forced.contains("nothing imported"), "{forced}");
    let listed = admin.json(&["key", "list", "--json"]);
    assert_ne!(listed[0]["kid"], kid.as_str());
    assert_eq!(listed[0]["algorithm"], "RS256");
}

/// `finish` waits for the longest token lifetime any server signed with, not the CLI's own.
#[test]
fn finish_waits_for_the_longest_lifetime_a_server_signed_with() {
    let portcullis = Portcullis::start_with(&[("PORTCULLIS_TOKEN__EXPIRES_IN", "3600")]);
    let default_lifetime: [(&str, &str); 0] = [];
    portcullis.cli_with(&default_lifetime, &["key", "rotate", "prepare"], None).assert_success();
    portcullis.cli_with(&default_lifetime, &["key", "rotate", "promote"], None).assert_success();
    let refused = portcullis.cli_with(&default_lifetime, &["key", "rotate", "finish"], None);
    assert!(refused.assert_failure().stderr.contains("3600 s of token lifetime"), "{refused}");
}

/// The way back: a rotation from RS256 to ES256 against registry 2.8, old tokens working
/// throughout.
#[test]
fn a_rotation_changes_the_algorithm_back_to_es256() {
    let (portcullis, mut registry) = stack_with(&[("PORTCULLIS_TOKEN__ALGORITHM", "RS256")]);
    let answer = portcullis.token(&format!("service={SERVICE}&scope={PULL}"), Some(("dev", "dev-pw")));
    assert_eq!(answer.token_header()["alg"], "RS256");
    let old_token = answer.json()["token"].as_str().unwrap().to_string();
    let prepared = portcullis.ok(&["key", "rotate", "prepare", "--algorithm", "ES256"]);
    assert!(prepared.contains("signingalgorithms: [ES256, RS256]"), "{prepared}");
    registry.restart();
    portcullis.ok(&["key", "rotate", "promote"]);
    let answer = portcullis.token(&format!("service={SERVICE}&scope={PULL}"), Some(("dev", "dev-pw")));
    assert_eq!(answer.token_header()["alg"], "ES256");
    assert_eq!(
        registry_status(&registry, answer.json()["token"].as_str().unwrap()),
        200,
        "{}",
        registry.log()
    );
    assert_eq!(registry_status(&registry, &old_token), 200, "the RS256 token still works");
    let v3 = portcullis.ok(&["registry-config", "--registry-version", "3"]);
    assert!(v3.contains("signingalgorithms: [ES256, RS256]"), "both while the old key is trusted: {v3}");
}
