//! `portcullis access check` side by side with the token endpoint: for every kind of principal
//! (admin, member, non-member, disabled user, project and system robots, a personal token,
//! anonymous) and every kind of refusal, what it says would be granted is what a token request
//! with that principal's credential holds, and each answer carries its reason.

use serde_json::Value;

use crate::support::binary::{Portcullis, ADMIN, SERVICE};

/// `access check --json` for `principal` (`None`: `--anonymous`) and `scopes`, with `extra` flags.
fn check(server: &Portcullis, principal: Option<&str>, extra: &[&str], scopes: &[&str]) -> Value {
    let mut args = vec!["access", "check", "--json"];
    args.extend_from_slice(extra);
    match principal {
        Some(name) => args.push(name),
        None => args.push("--anonymous"),
    }
    args.extend_from_slice(scopes);
    server.json(&args)
}

/// What the check says the token would hold, as `type:name:actions` strings.
fn checked_grants(answer: &Value) -> Vec<String> {
    let scopes = answer["scopes"].as_array().cloned().unwrap_or_default();
    scopes.iter().filter_map(|scope| scope["granted"].as_str().map(str::to_string)).collect()
}

/// What a token request with `credentials` is granted for `scopes`.
fn endpoint_grants(server: &Portcullis, credentials: Option<(&str, &str)>, scopes: &[&str]) -> Vec<String> {
    let mut query = format!("service={SERVICE}");
    for scope in scopes {
        query.push_str(&format!("&scope={scope}"));
    }
    let response = server.token(&query, credentials);
    assert_eq!(response.status, 200, "{credentials:?} {scopes:?}: {response:?}");
    response.access()
}

/// Asserts that the check and the endpoint agree; returns the check's answer.
#[track_caller]
fn side_by_side(
    server: &Portcullis,
    principal: Option<&str>,
    extra: &[&str],
    credentials: Option<(&str, &str)>,
    scopes: &[&str],
) -> Value {
    let answer = check(server, principal, extra, scopes);
    let mut checked = checked_grants(&answer);
    let mut granted = endpoint_grants(server, credentials, scopes);
    checked.sort();
    granted.sort();
    assert_eq!(
        checked, granted,
        "access check and the endpoint disagree for {principal:?} {scopes:?}:\n{answer:#}"
    );
    answer
}

/// Every reason given in an answer, granted and refused, in one text to search.
fn reasons(answer: &Value) -> String {
    let mut text = String::new();
    for scope in answer["scopes"].as_array().into_iter().flatten() {
        for because in scope["because"].as_array().into_iter().flatten() {
            text.push_str(&format!("because: {}\n", because.as_str().unwrap_or_default()));
        }
        for refused in scope["refused"].as_array().into_iter().flatten() {
            text.push_str(&format!(
                "refused {}: {}\n",
                refused["scope"],
                refused["reason"].as_str().unwrap_or_default()
            ));
        }
    }
    text
}

#[test]
fn access_check_answers_as_the_token_endpoint_does_and_says_why() {
    let server = Portcullis::start();
    server.create_project("team", false);
    server.create_project("open", true);
    for (user, password) in
        [("dev", "dev-password"), ("guest", "guest-password"), ("outsider", "outsider-pw")]
    {
        server.add_user(user, password);
    }
    server.add_member("team", "dev", "developer");
    server.add_member("team", "guest", "guest");
    let project_robot =
        server.json(&["robot", "create", "ci", "--project", "team", "--actions", "pull,push", "--json"]);
    let project_secret = project_robot["secret"].as_str().expect("the robot's secret").to_string();
    let system_robot = server.json(&[
        "robot",
        "create",
        "mirror",
        "--system",
        "--projects",
        "open",
        "--actions",
        "pull",
        "--json",
    ]);
    let system_secret = system_robot["secret"].as_str().unwrap().to_string();
    let pat =
        server.json(&["pat", "create", "--user", "dev", "--name", "laptop", "--actions", "pull", "--json"]);
    let pat_token = pat["token"].as_str().unwrap_or_else(|| panic!("no token in {pat}")).to_string();

    let all = [
        "repository:team/app:pull,push,delete",
        "repository:open/base:pull,push",
        "repository:missing/x:pull",
        "repository:single:pull",
        "registry:catalog:*",
    ];
    // The system admin: everything on projects that exist, and the catalog.
    let admin = side_by_side(&server, Some(ADMIN.0), &[], Some(ADMIN), &all);
    assert!(admin["system_admin"].as_str().unwrap().contains("user admin"), "{admin:#}");
    assert!(reasons(&admin).contains("project missing does not exist"), "{}", reasons(&admin));
    assert!(reasons(&admin).contains("names no project"), "{}", reasons(&admin));
    // A developer: their role, from their own membership; what no role of theirs grants.
    let dev = side_by_side(&server, Some("dev"), &[], Some(("dev", "dev-password")), &all);
    let why = reasons(&dev);
    assert!(why.contains("because: developer in team: own membership"), "{why}");
    assert!(why.contains("developer may not delete in team"), "{why}");
    assert!(why.contains("open is public: anyone may pull"), "{why}");
    assert!(why.contains("dev is not a member of open, which is public: pull only"), "{why}");
    assert!(why.contains("only system admins read the catalog"), "{why}");
    // A guest, and a user who is in no project.
    let guest = side_by_side(&server, Some("guest"), &[], Some(("guest", "guest-password")), &all);
    assert!(reasons(&guest).contains("guest may not push in team"), "{}", reasons(&guest));
    let outsider = side_by_side(&server, Some("outsider"), &[], Some(("outsider", "outsider-pw")), &all);
    assert!(reasons(&outsider).contains("outsider is not a member of team"), "{}", reasons(&outsider));
    // Robots: their permission list and nothing else.
    let ci =
        side_by_side(&server, Some("robot_team+ci"), &[], Some(("robot_team+ci", &project_secret)), &all);
    assert_eq!(ci["ceiling"], "pull,push on team", "{ci:#}");
    assert!(reasons(&ci).contains("do not include delete in team"), "{}", reasons(&ci));
    assert!(reasons(&ci).contains("robots and personal tokens never read the catalog"), "{}", reasons(&ci));
    let mirror =
        side_by_side(&server, Some("robot_mirror"), &[], Some(("robot_mirror", &system_secret)), &all);
    assert_eq!(mirror["ceiling"], "pull on open", "{mirror:#}");
    // A personal token: the person's roles under the token's list.
    let laptop = side_by_side(&server, Some("dev"), &["--pat", "laptop"], Some(("dev", &pat_token)), &all);
    assert!(
        reasons(&laptop).contains("dev's permissions (pull on all projects) do not include push"),
        "{}",
        reasons(&laptop)
    );
    // Anonymous: public pulls only.
    let anonymous = side_by_side(&server, None, &[], None, &all);
    assert_eq!(anonymous["kind"], "anonymous");
    assert!(reasons(&anonymous).contains("project team is private: log in"), "{}", reasons(&anonymous));
    assert!(
        reasons(&anonymous).contains("anonymous clients may only pull from open"),
        "{}",
        reasons(&anonymous)
    );

    // A change applies to the check as to the endpoint: dev becomes maintainer.
    server.add_member("team", "dev", "maintainer");
    side_by_side(&server, Some("dev"), &[], Some(("dev", "dev-password")), &all);
    // A disabled user or robot gets no token at all; the check says why.
    server.ok(&["user", "disable", "guest"]);
    let disabled = check(&server, Some("guest"), &[], &all);
    assert!(disabled["refused_entirely"].as_str().unwrap().contains("disabled"), "{disabled:#}");
    assert_eq!(server.token(&format!("service={SERVICE}"), Some(("guest", "guest-password"))).status, 401);
    server.ok(&["robot", "disable", "robot_team+ci"]);
    let robot_off = check(&server, Some("robot_team+ci"), &[], &all);
    assert!(
        robot_off["refused_entirely"].as_str().unwrap().contains("expired or is disabled"),
        "{robot_off:#}"
    );
    assert_eq!(
        server.token(&format!("service={SERVICE}"), Some(("robot_team+ci", &project_secret))).status,
        401
    );

    // The people's form names the same things.
    let text = server.ok(&["access", "check", "dev", "repository:team/app:pull,delete"]);
    assert!(
        text.contains("granted  delete,pull") && text.contains("maintainer in team: own membership"),
        "{text}"
    );

    // Bad input is refused as the endpoint refuses it, with a clear message and a non-zero exit.
    let bad_scope = server.fails(&["access", "check", "dev", "repository:Team/App:pull"]);
    assert!(bad_scope.contains("invalid"), "{bad_scope}");
    let bad_service =
        server.fails(&["access", "check", "--service", "elsewhere", "dev", "repository:team/app:pull"]);
    assert!(bad_service.contains("unknown service"), "{bad_service}");
    let nobody = server.fails(&["access", "check", "nobody", "repository:team/app:pull"]);
    assert!(nobody.contains("no user or robot is called \"nobody\""), "{nobody}");
    let no_pat = server.fails(&["access", "check", "--pat", "desktop", "dev", "repository:team/app:pull"]);
    assert!(no_pat.contains("no personal token labelled \"desktop\""), "{no_pat}");
}
