//! A real Synapse for tests and the demo.
//!
//! Lifecycle: [`Synapse::start`] installs Synapse if needed (see
//! [`install`]), writes a config bound to 127.0.0.1 on a free port, starts
//! it and waits until `/_matrix/client/versions` answers. [`Drop`] stops it
//! by PID. Synapse runs under a small shell watchdog that holds a pipe from
//! this process: if the process dies (a panic, SIGKILL, or a `static`
//! server that is never dropped), the pipe closes and the watchdog kills
//! Synapse, so no server outlives its tests.
//!
//! Sharing: [`Synapse::shared`] gives one server per test process; tests
//! in it register their own users and never collide. Separate processes
//! (test binaries run at once) each start their own server on their own
//! port and data directory; only the install step is shared, behind a lock.

use crate::http;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The Synapse release the harness installs (pinned).
pub const SYNAPSE_VERSION: &str = "1.163.2";

/// What can go wrong starting or using the harness.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    /// Running a command or touching a file failed.
    #[error("{what}: {source}")]
    Io {
        /// What the harness was doing.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A step ran but did not succeed.
    #[error("{0}")]
    Failed(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Io { what, source }
}

/// Server options.
#[derive(Debug, Clone, Default)]
pub struct SynapseOptions {
    /// Keep Synapse's default rate limits (for 429 tests). Off by default.
    pub rate_limits: bool,
}

/// A user registered on the test server.
#[derive(Debug, Clone)]
pub struct RegisteredUser {
    /// Full user ID.
    pub user_id: String,
    /// Localpart as registered.
    pub localpart: String,
    /// Password.
    pub password: String,
}

/// A running Synapse.
#[derive(Debug)]
pub struct Synapse {
    port: u16,
    shared_secret: String,
    dir: tempfile::TempDir,
    watchdog: Child,
}

/// The cache directory the install lives in.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("NEWT_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("newt")
}

/// Installs the pinned Synapse into a venv under [`cache_dir`] unless it is
/// there already, and returns the venv's python.
pub fn install() -> Result<PathBuf, HarnessError> {
    install_venv(
        &format!("synapse-{SYNAPSE_VERSION}"),
        &format!("matrix-synapse=={SYNAPSE_VERSION}"),
    )
}

/// Installs `requirement` from PyPI into the venv `name` under
/// [`cache_dir`] unless it is there, and returns the venv's python.
/// Concurrent callers in other processes wait on a file lock; a half-done
/// install (no marker) is redone.
pub fn install_venv(name: &str, requirement: &str) -> Result<PathBuf, HarnessError> {
    let cache = cache_dir();
    std::fs::create_dir_all(&cache).map_err(io(format!("creating {}", cache.display())))?;
    let venv = cache.join(name);
    let python = venv.join("bin").join("python");
    let marker = venv.join(".newt-installed");
    if marker.exists() {
        return Ok(python);
    }
    let lock =
        std::fs::File::create(cache.join("install.lock")).map_err(io("creating install lock"))?;
    lock.lock().map_err(io("locking the install"))?;
    if marker.exists() {
        return Ok(python);
    }
    eprintln!(
        "newt-testkit: installing {requirement} into {} (once)",
        venv.display()
    );
    if venv.exists() {
        std::fs::remove_dir_all(&venv).map_err(io("removing a half-done install"))?;
    }
    let base_python = std::env::var("NEWT_PYTHON").unwrap_or_else(|_| "python3".into());
    run(
        Command::new(&base_python).args(["-m", "venv"]).arg(&venv),
        "creating a venv",
    )?;
    run(
        Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            requirement,
        ]),
        &format!("pip install {requirement}"),
    )?;
    std::fs::write(&marker, requirement).map_err(io("writing the install marker"))?;
    Ok(python)
}

fn run(cmd: &mut Command, what: &str) -> Result<(), HarnessError> {
    let out = cmd.stdin(Stdio::null()).output().map_err(io(what))?;
    if !out.status.success() {
        return Err(HarnessError::Failed(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

fn free_port() -> Result<u16, HarnessError> {
    let listener =
        std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(io("finding a free port"))?;
    Ok(listener
        .local_addr()
        .map_err(io("finding a free port"))?
        .port())
}

/// Rate-limit settings this Synapse version knows.
const RATE_LIMITS: &[&str] = &[
    "rc_message",
    "rc_registration",
    "rc_registration_token_validity",
    "rc_admin_redaction",
    "rc_3pid_validation",
    "rc_third_party_invite",
    "rc_key_requests",
    "rc_media_create",
    "rc_delayed_event_mgmt",
    "rc_room_creation",
    "rc_reports",
    "rc_user_directory",
    "rc_profile",
    "rc_joins_per_room",
];

fn overrides(port: u16, dir: &Path, secret: &str, options: &SynapseOptions) -> Value {
    let mut config = json!({
        "listeners": [{
            "port": port, "type": "http", "tls": false,
            "bind_addresses": ["127.0.0.1"], "x_forwarded": false,
            "resources": [{"names": ["client"], "compress": false}]
        }],
        "database": {"name": "sqlite3", "args": {"database": dir.join("homeserver.db")}},
        "enable_registration": true,
        "enable_registration_without_verification": true,
        "registration_shared_secret": secret,
        "trusted_key_servers": [],
        "presence": {"enabled": false},
        "report_stats": false,
        "pid_file": dir.join("homeserver.pid"),
        "suppress_key_server_warning": true,
        // Test passwords need no brute-force resistance; hashing them at
        // the default cost makes each login take a quarter second.
        "bcrypt_rounds": 4,
    });
    if !options.rate_limits {
        let unlimited = json!({"per_second": 10000, "burst_count": 100000});
        if let Value::Object(map) = &mut config {
            for key in RATE_LIMITS {
                map.insert((*key).into(), unlimited.clone());
            }
            map.insert(
                "rc_login".into(),
                json!({"address": unlimited, "account": unlimited, "failed_attempts": unlimited}),
            );
            map.insert(
                "rc_joins".into(),
                json!({"local": unlimited, "remote": unlimited}),
            );
            map.insert(
                "rc_invites".into(),
                json!({"per_room": unlimited, "per_user": unlimited, "per_issuer": unlimited}),
            );
            map.insert("rc_presence".into(), json!({"per_user": unlimited}));
        }
    }
    config
}

impl Synapse {
    /// One server for the whole test process, started on first use.
    pub fn shared() -> Result<&'static Synapse, HarnessError> {
        static SHARED: OnceLock<Result<Synapse, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| Synapse::start(SynapseOptions::default()).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| HarnessError::Failed(e.clone()))
    }

    /// Installs (if needed), configures and starts a new server.
    pub fn start(options: SynapseOptions) -> Result<Self, HarnessError> {
        let python = install()?;
        let dir = tempfile::Builder::new()
            .prefix("newt-synapse-")
            .tempdir()
            .map_err(io("creating the server directory"))?;
        let d = dir.path();
        let config = d.join("homeserver.yaml");
        run(
            Command::new(&python)
                .args([
                    "-m",
                    "synapse.app.homeserver",
                    "--server-name",
                    "localhost",
                    "--config-path",
                ])
                .arg(&config)
                .arg("--data-directory")
                .arg(d)
                .arg("--config-directory")
                .arg(d)
                .args(["--generate-config", "--report-stats=no"])
                // Config generation logs to `homeserver.log` in the working directory too.
                .current_dir(d),
            "generating the Synapse config",
        )?;
        let port = free_port()?;
        let secret = format!("newt-{}", rand::random::<u64>());
        let extra = d.join("overrides.yaml");
        let text = overrides(port, d, &secret, &options).to_string();
        std::fs::write(&extra, text).map_err(io("writing the overrides"))?;
        let log = std::fs::File::create(d.join("stdout.log")).map_err(io("creating the log"))?;
        let log2 = log.try_clone().map_err(io("creating the log"))?;
        // The watchdog: Synapse runs in the background; when our end of the
        // pipe on stdin closes (this process ended), `cat` returns and the
        // server is killed.
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(r#""$@" </dev/null & child=$!; cat >/dev/null; kill "$child" 2>/dev/null; sleep 2; kill -9 "$child" 2>/dev/null"#)
            .arg("newt-synapse-watchdog")
            .arg(&python)
            .args(["-m", "synapse.app.homeserver", "-c"])
            .arg(&config)
            .arg("-c")
            .arg(&extra)
            // Synapse's default log config writes `homeserver.log` into the
            // working directory: keep it in the server's own directory.
            .current_dir(d)
            .stdin(Stdio::piped())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(io("starting Synapse"))?;
        let mut server = Self {
            port,
            shared_secret: secret,
            dir,
            watchdog,
        };
        server.wait_until_ready()?;
        Ok(server)
    }

    fn wait_until_ready(&mut self) -> Result<(), HarnessError> {
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            if let Ok(resp) = http::request(self.port, "GET", "/_matrix/client/versions", None)
                && resp.status == 200
            {
                return Ok(());
            }
            if let Ok(Some(status)) = self.watchdog.try_wait() {
                return Err(HarnessError::Failed(format!(
                    "Synapse exited early ({status}); log:\n{}",
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(HarnessError::Failed(format!(
            "Synapse did not answer within 90 s; log:\n{}",
            self.log_tail()
        )))
    }

    /// The last lines of the server's output, for error messages.
    pub fn log_tail(&self) -> String {
        let mut text =
            std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default();
        text.push_str(
            &std::fs::read_to_string(self.dir.path().join("homeserver.log")).unwrap_or_default(),
        );
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The port the client API listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The base URL for clients.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server name user IDs end with.
    pub fn server_name(&self) -> &'static str {
        "localhost"
    }

    /// Registers `localpart` (made unique with a random suffix) through
    /// the shared-secret admin API.
    pub fn register(&self, localpart: &str) -> Result<RegisteredUser, HarnessError> {
        let localpart = format!("{localpart}-{:08x}", rand::random::<u32>());
        let password = format!("pw-{:016x}", rand::random::<u64>());
        let path = "/_synapse/admin/v1/register";
        let nonce = http::request(self.port, "GET", path, None).map_err(io("fetching a nonce"))?;
        let nonce: Value = serde_json::from_str(&nonce.body)
            .map_err(|e| HarnessError::Failed(format!("nonce response: {e}")))?;
        let nonce = nonce["nonce"].as_str().unwrap_or_default().to_owned();
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(self.shared_secret.as_bytes())
            .map_err(|e| HarnessError::Failed(e.to_string()))?;
        mac.update(format!("{nonce}\0{localpart}\0{password}\0notadmin").as_bytes());
        let mac = hex::encode(mac.finalize().into_bytes());
        let body = json!({"nonce": nonce, "username": localpart, "password": password, "mac": mac, "admin": false});
        let resp = http::request(self.port, "POST", path, Some(&body.to_string()))
            .map_err(io("registering"))?;
        if resp.status != 200 {
            return Err(HarnessError::Failed(format!(
                "register {localpart}: {} {}",
                resp.status, resp.body
            )));
        }
        Ok(RegisteredUser {
            user_id: format!("@{localpart}:localhost"),
            localpart,
            password,
        })
    }

    /// Sends a request with an access token (for tests that act as a
    /// second, independent client).
    pub fn call(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, HarnessError> {
        let text = body.map(Value::to_string);
        let resp = http::request_with_token(self.port, method, path, token, text.as_deref())
            .map_err(io(format!("{method} {path}")))?;
        if !(200..300).contains(&resp.status) {
            return Err(HarnessError::Failed(format!(
                "{method} {path}: {} {}",
                resp.status, resp.body
            )));
        }
        serde_json::from_str(&resp.body)
            .map_err(|e| HarnessError::Failed(format!("{method} {path}: {e}")))
    }

    /// Logs `user` in with a password and returns `(access_token, device_id)`.
    pub fn login(&self, user: &RegisteredUser) -> Result<(String, String), HarnessError> {
        let body = json!({"type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user.localpart}, "password": user.password});
        let resp = http::request(
            self.port,
            "POST",
            "/_matrix/client/v3/login",
            Some(&body.to_string()),
        )
        .map_err(io("logging in"))?;
        let value: Value =
            serde_json::from_str(&resp.body).map_err(|e| HarnessError::Failed(e.to_string()))?;
        match (value["access_token"].as_str(), value["device_id"].as_str()) {
            (Some(t), Some(d)) => Ok((t.to_owned(), d.to_owned())),
            _ => Err(HarnessError::Failed(format!(
                "login: {} {}",
                resp.status, resp.body
            ))),
        }
    }

    fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.path().join("homeserver.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }
}

impl Drop for Synapse {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        // Closing stdin ends the watchdog too.
        drop(self.watchdog.stdin.take());
        let _ = self.watchdog.wait();
    }
}
