//! End to end with skopeo: the Debian `docker-registry` (registry:2's code) trusts Portcullis's
//! tokens, and skopeo copies, inspects and deletes through it with Harbor's roles enforced.

use crate::support::binary::Portcullis;
use crate::support::oci::make_oci_layout;
use crate::support::registry::Registry;
use crate::support::skopeo::Skopeo;

struct Stack {
    portcullis: Portcullis,
    registry: Registry,
    skopeo: Skopeo,
    /// `oci:DIR:latest`, a tiny image to push.
    source: String,
    _layout: tempfile::TempDir,
}

fn stack(portcullis: Portcullis) -> Stack {
    portcullis.create_project("team", false);
    portcullis.create_project("open", true);
    for (user, role) in [("maint", "maintainer"), ("dev", "developer"), ("guest", "guest")] {
        portcullis.add_user(user, &format!("{user}-pw"));
        portcullis.add_member("team", user, role);
    }
    portcullis.add_member("open", "maint", "maintainer");
    portcullis.add_user("outsider", "outsider-pw");
    let registry = Registry::start(portcullis.token_auth());
    let layout = tempfile::tempdir().expect("layout dir");
    make_oci_layout(layout.path(), "latest", "skopeo end-to-end");
    let source = format!("oci:{}:latest", layout.path().display());
    Stack { portcullis, registry, skopeo: Skopeo::new(), source, _layout: layout }
}

impl Stack {
    fn image(&self, repository_and_tag: &str) -> String {
        format!("docker://{}/{repository_and_tag}", self.registry.addr())
    }

    fn context(&self) -> String {
        format!("--- registry log\n{}\n--- portcullis log\n{}", self.registry.log(), self.portcullis.log())
    }
}

#[test]
fn skopeo_copy_inspect_and_delete_follow_roles() {
    let stack = stack(Portcullis::start());
    let pushed = stack.image("team/app:v1");

    // A developer pushes; everybody with a role pulls it back out.
    let out = stack.skopeo.copy(&stack.source, &pushed, Some(("dev", "dev-pw")));
    assert!(out.success(), "developer push failed:\n{out}\n{}", stack.context());
    let pulled = tempfile::tempdir().unwrap();
    let destination = format!("oci:{}:copy", pulled.path().display());
    stack.skopeo.copy(&pushed, &destination, Some(("guest", "guest-pw"))).assert_success();
    let inspect = stack.skopeo.inspect(&pushed, Some(("guest", "guest-pw")));
    inspect.assert_success();
    assert!(inspect.stdout.contains("team/app"), "{inspect}");

    // A guest may not push; an outsider may not even look; a wrong password is refused.
    stack
        .skopeo
        .copy(&stack.source, &stack.image("team/app:guest"), Some(("guest", "guest-pw")))
        .assert_failure();
    stack.skopeo.inspect(&pushed, Some(("outsider", "outsider-pw"))).assert_failure();
    let wrong = stack.skopeo.inspect(&pushed, Some(("dev", "not-the-password")));
    wrong.assert_failure();

    // Deleting takes a maintainer: the developer's `*` scope is cut down to pull,push.
    stack.skopeo.delete(&pushed, Some(("dev", "dev-pw"))).assert_failure();
    stack.skopeo.inspect(&pushed, Some(("dev", "dev-pw"))).assert_success();
    let deleted = stack.skopeo.delete(&pushed, Some(("maint", "maint-pw")));
    assert!(deleted.success(), "maintainer delete failed:\n{deleted}\n{}", stack.context());
    stack.skopeo.inspect(&pushed, Some(("maint", "maint-pw"))).assert_failure();
}

#[test]
fn skopeo_anonymous_pulls_public_projects_only() {
    let stack = stack(Portcullis::start());
    stack
        .skopeo
        .copy(&stack.source, &stack.image("open/base:1"), Some(("maint", "maint-pw")))
        .assert_success();
    stack
        .skopeo
        .copy(&stack.source, &stack.image("team/secret:1"), Some(("maint", "maint-pw")))
        .assert_success();
    let public = stack.skopeo.inspect(&stack.image("open/base:1"), None);
    assert!(public.success(), "anonymous pull of a public project:\n{public}\n{}", stack.context());
    stack.skopeo.inspect(&stack.image("team/secret:1"), None).assert_failure();
    stack.skopeo.copy(&stack.source, &stack.image("open/base:2"), None).assert_failure();
}

#[test]
fn skopeo_works_with_rs256_tokens() {
    let stack = stack(Portcullis::start_with(&[("PORTCULLIS_TOKEN__ALGORITHM", "RS256")]));
    let out = stack.skopeo.copy(&stack.source, &stack.image("team/rsa:1"), Some(("dev", "dev-pw")));
    assert!(out.success(), "RS256 push failed:\n{out}\n{}", stack.context());
    stack.skopeo.inspect(&stack.image("team/rsa:1"), Some(("guest", "guest-pw"))).assert_success();
}
