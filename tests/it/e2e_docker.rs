//! End to end with the docker CLI and a dockerd started by the test: login with a right and a
//! wrong password, push, pull, and roles enforced by the unmodified registry.

use crate::support::binary::Portcullis;
use crate::support::dockerd::Dockerd;
use crate::support::registry::Registry;

#[test]
fn docker_login_push_pull_and_roles() {
    let portcullis = Portcullis::start();
    portcullis.create_project("team", false);
    portcullis.create_project("open", true);
    portcullis.add_user("dev", "dev-pw");
    portcullis.add_user("guest", "guest-pw");
    portcullis.add_user("outsider", "outsider-pw");
    portcullis.add_member("team", "dev", "developer");
    portcullis.add_member("open", "dev", "developer");
    portcullis.add_member("team", "guest", "guest");
    let registry = Registry::start(portcullis.token_auth());
    let docker = Dockerd::start();
    let host = registry.addr().to_string();
    let context = || format!("--- registry\n{}\n--- portcullis\n{}", registry.log(), portcullis.log());

    // A wrong password: docker reports the token server's 401 message and stores nothing.
    let wrong = docker.login(&host, "dev", "wrong-password");
    wrong.assert_failure();
    assert!(wrong.combined().contains("unauthorized"), "{wrong}");

    // The right one.
    let login = docker.login(&host, "dev", "dev-pw");
    assert!(login.success(), "{login}\n{}", context());
    assert!(login.combined().contains("Login Succeeded"), "{login}");

    // Push and pull back.
    let image = format!("{host}/team/app:1");
    docker.import_image(&image);
    let push = docker.docker(&["push", &image], None);
    assert!(push.success(), "developer push:\n{push}\n{}", context());
    docker.docker(&["rmi", &image], None).assert_success();
    let pull = docker.docker(&["pull", &image], None);
    assert!(pull.success(), "developer pull:\n{pull}\n{}", context());

    // A public project's image for the anonymous pull below.
    let public = format!("{host}/open/base:1");
    docker.import_image(&public);
    docker.docker(&["push", &public], None).assert_success();

    // A guest pulls but may not push.
    docker.docker(&["logout", &host], None).assert_success();
    docker.login(&host, "guest", "guest-pw").assert_success();
    docker.docker(&["rmi", &image], None).assert_success();
    docker.docker(&["pull", &image], None).assert_success();
    let guest_image = format!("{host}/team/guest-push:1");
    docker.import_image(&guest_image);
    let denied = docker.docker(&["push", &guest_image], None);
    denied.assert_failure();
    assert!(denied.combined().contains("denied"), "{denied}");

    // A user with no role in the project gets nothing.
    docker.docker(&["logout", &host], None).assert_success();
    docker.login(&host, "outsider", "outsider-pw").assert_success();
    docker.docker(&["rmi", &image], None).assert_success();
    docker.docker(&["pull", &image], None).assert_failure();
    let outsider_image = format!("{host}/team/outsider:1");
    docker.import_image(&outsider_image);
    docker.docker(&["push", &outsider_image], None).assert_failure();

    // Anonymous: public pull allowed, private pull denied.
    docker.docker(&["logout", &host], None).assert_success();
    docker.docker(&["rmi", &public], None).assert_success();
    let anonymous = docker.docker(&["pull", &public], None);
    assert!(anonymous.success(), "anonymous pull of a public project:\n{anonymous}\n{}", context());
    docker.docker(&["pull", &image], None).assert_failure();
}

/// Password guessing with the real client: docker's own logins from its address are told
/// `toomanyrequests` after a few wrong passwords, while the same user still logs in from another
/// address (here a raw client on 127.0.0.4).
#[test]
fn docker_login_guessing_is_throttled_and_the_user_logs_in_elsewhere() {
    let portcullis = Portcullis::start_with(&[("PORTCULLIS_THROTTLE__CLIENT_FAILURES", "3")]);
    portcullis.add_user("dev", "dev-pw");
    let registry = Registry::start(portcullis.token_auth());
    let docker = Dockerd::start();
    let host = registry.addr().to_string();
    for guess in 0..3 {
        let wrong = docker.login(&host, "dev", &format!("guess-{guess}"));
        assert!(wrong.combined().contains("unauthorized"), "{wrong}");
    }
    let throttled = docker.login(&host, "dev", "dev-pw");
    throttled.assert_failure();
    assert!(throttled.combined().contains("toomanyrequests"), "{throttled}\n{}", portcullis.log());
    let request = format!(
        "GET /token?service=registry.test HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: {}\r\n\r\n",
        crate::support::http::basic("dev", "dev-pw")
    );
    let elsewhere = crate::support::http::send_raw_from(
        std::net::Ipv4Addr::new(127, 0, 0, 4),
        portcullis.addr(),
        request.as_bytes(),
    );
    assert_eq!(elsewhere.status, 200, "{elsewhere:?}");
}
