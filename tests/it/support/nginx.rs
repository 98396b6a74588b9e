//! A private nginx (Debian's `nginx`) on a loopback port as the load balancer in front of
//! several token servers, with the `location` block of `examples/ha/nginx.conf` as written
//! there: a request that fails on one replica (refused, reset, timed out, 503) is retried on the
//! next, POSTs included (every token request is safe to retry), and the client's address goes on
//! in `X-Forwarded-For`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use super::process::{free_port, log_file, require_binary, tail, wait_for_tcp, ChildGuard};

pub struct Nginx {
    /// Held for its Drop, which stops nginx before `dir` is deleted (fields drop in declaration
    /// order).
    _daemon: ChildGuard,
    addr: String,
    /// nginx.conf, the logs, the pid file and nginx's temp dirs.
    dir: TempDir,
}

impl Nginx {
    /// Starts nginx balancing over `upstreams` (`host:port` each); returns once it listens.
    pub fn start(upstreams: &[&str]) -> Nginx {
        let binary = require_binary("nginx", "nginx");
        let dir = tempfile::Builder::new().prefix("pc-nginx-").tempdir().expect("create an nginx temp dir");
        for attempt in 1..=3 {
            let addr = format!("127.0.0.1:{}", free_port());
            std::fs::write(dir.path().join("nginx.conf"), config(&addr, upstreams, dir.path()))
                .expect("write nginx.conf");
            let (stdout, stderr) = log_file(&dir.path().join("nginx.out"));
            let prefix = format!("{}/", dir.path().display());
            let mut command = Command::new(&binary);
            command
                .args(["-p", &prefix, "-c", "nginx.conf", "-g"])
                .arg(format!("daemon off; pid {}/nginx.pid;", dir.path().display()))
                .stdout(stdout)
                .stderr(stderr);
            let mut daemon = ChildGuard::spawn("nginx", &mut command);
            match daemon
                .poll_until("listening", Duration::from_secs(10), || wait_for_tcp(&addr, Duration::ZERO))
            {
                Ok(()) => return Nginx { _daemon: daemon, addr, dir },
                Err(_)
                    if attempt < 3
                        && tail(&dir.path().join("error.log")).contains("Address already in use") =>
                {
                    continue
                }
                Err(why) => panic!("{why}:\n{}", tail(&dir.path().join("error.log"))),
            }
        }
        unreachable!("the last attempt returns or panics");
    }

    /// `host:port` nginx listens on.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Its error log (upstream failures and retries are logged here).
    pub fn error_log(&self) -> String {
        tail(&self.dir.path().join("error.log"))
    }
}

/// The `location / { ... }` block of `examples/ha/nginx.conf`, as written there.
fn example_location() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ha/nginx.conf");
    let example = std::fs::read_to_string(&path).expect("examples/ha/nginx.conf");
    let start = example.find("        location / {").expect("a location / block in examples/ha/nginx.conf");
    let end = example[start..].find("\n        }\n").expect("the end of its location block") + start;
    example[start..end + "\n        }".len()].to_string()
}

fn config(addr: &str, upstreams: &[&str], dir: &Path) -> String {
    let servers: String = upstreams.iter().map(|upstream| format!("        server {upstream};\n")).collect();
    let location = example_location();
    let dir = dir.display();
    format!(
        "user root;
worker_processes 1;
error_log {dir}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream portcullis {{
{servers}    }}
    server {{
        listen {addr};
{location}
    }}
}}
"
    )
}
