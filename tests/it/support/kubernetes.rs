//! The example Kubernetes manifests, checked as a cluster would take them and run as a pod
//! would run: validated against the Kubernetes schemas (`kubernetes-validate`, PyPI), and the
//! binary started with a Deployment's arguments, environment and uid (`setpriv`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::process::{free_port, log_file, require_binary, run, tail, wait_for_tcp, ChildGuard};

/// The example manifests in `examples/kubernetes/<sub>` (`""`: the directory itself).
pub fn manifests(sub: &str) -> Vec<PathBuf> {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/kubernetes").join(sub);
    let mut manifests: Vec<PathBuf> = std::fs::read_dir(&directory)
        .unwrap_or_else(|error| panic!("{}: {error}", directory.display()))
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "yaml"))
        .collect();
    manifests.sort();
    manifests
}

/// Asserts that Kubernetes' schemas accept `manifests` (strict: no unknown fields).
pub fn validate(manifests: &[PathBuf]) {
    let validate = require_binary("kubernetes-validate", "kubernetes-validate (PyPI)");
    run(Command::new(&validate).arg("--strict").args(manifests), None).assert_success();
}

/// The first container of a Deployment, as its pod runs it.
pub struct Container {
    pub args: Vec<String>,
    pub uid: u32,
    /// Each variable with its `value` (`None` for one taken from a Secret).
    pub env: Vec<(String, Option<String>)>,
}

/// The first container of the Deployment in `deployment`, read by PyYAML (the validator's own).
pub fn container(deployment: &Path) -> Container {
    let script = "import json,sys,yaml\nd=yaml.safe_load(open(sys.argv[1]))\ns=d['spec']['template']['spec']\nc=s['containers'][0]\n\
                  print(json.dumps({'args':c['args'],'uid':s['securityContext']['runAsUser'],\
                  'env':[[e['name'],e.get('value')] for e in c['env']]}))";
    let described = run(Command::new("python3").arg("-c").arg(script).arg(deployment), None);
    described.assert_success();
    let container: serde_json::Value = serde_json::from_str(&described.stdout).expect("JSON");
    let text = |value: &serde_json::Value| value.as_str().map(str::to_string);
    Container {
        args: container["args"]
            .as_array()
            .expect("args")
            .iter()
            .map(|arg| text(arg).expect("text"))
            .collect(),
        uid: container["uid"].as_u64().expect("runAsUser") as u32,
        env: container["env"]
            .as_array()
            .expect("env")
            .iter()
            .map(|pair| (text(&pair[0]).expect("a name"), text(&pair[1])))
            .collect(),
    }
}

/// The binary run as `container` describes, under its uid, with only its environment (each
/// variable as `adapt` turns it for this machine: paths into temp dirs, Secrets filled in), the
/// variables Kubernetes injects for a Service named `portcullis`, and a loopback listen address.
/// Returns once it listens.
pub fn run_as_pod(
    container: &Container,
    adapt: impl Fn(&str, Option<&str>) -> String,
    log: &Path,
) -> (ChildGuard, String) {
    let setpriv = require_binary("setpriv", "util-linux");
    let uid = container.uid.to_string();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut serve = Command::new(setpriv);
    serve
        .args(["--reuid", &uid, "--regid", &uid, "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_portcullis"));
    serve.args(&container.args);
    serve.env_clear().env("PATH", "/usr/bin:/bin");
    for (name, value) in &container.env {
        match name.as_str() {
            "PORTCULLIS_LISTEN" => serve.env(name, &addr),
            _ => serve.env(name, adapt(name, value.as_deref())),
        };
    }
    serve.env("PORTCULLIS_PORT", "tcp://10.96.0.12:5001").env("PORTCULLIS_SERVICE_HOST", "10.96.0.12");
    let (stdout, stderr) = log_file(log);
    serve.stdout(stdout).stderr(stderr);
    let mut daemon = ChildGuard::spawn("portcullis as the Deployment runs it", &mut serve);
    daemon.wait_until("it to listen", Duration::from_secs(20), log, || {
        tail(log).contains("listening on") && wait_for_tcp(&addr, Duration::ZERO)
    });
    (daemon, addr)
}

/// A directory the pod's uid owns (what `fsGroup` makes of a volume).
pub fn volume(parent: &Path, name: &str, uid: u32) -> PathBuf {
    let path = parent.join(name);
    std::fs::create_dir_all(&path).expect("the volume");
    std::os::unix::fs::chown(&path, Some(uid), Some(uid)).expect("owned by the pod's uid");
    path
}
