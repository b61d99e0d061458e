//! Test harness for the integration tests: each test gets its own key and queue
//! prefix on the real Redis and RabbitMQ, an in-process WATI sandbox, and the api and
//! worker started on port 0 through the same `run` the binaries use. Everything the
//! test made is removed when its `TestEnv` is dropped, also when the test panics.

pub mod app_receiver;
pub mod clusters;
pub mod prometheus;
pub mod proxy;

use std::future::Future;
use std::time::Duration;

use clap::Parser;
use otp_api::config::{ApiArgs, ApiConfig};
use otp_shared::budget::{Budgets, WatiApiVersion};
use otp_shared::redis::conn::RedisConn;
use otp_worker::config::{WorkerArgs, WorkerConfig};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wati_sandbox::{Sandbox, SandboxConfig};

pub const REDIS_URL: &str = "redis://127.0.0.1:6379";
/// The six nodes of the local Redis Cluster `scripts/cluster up` starts.
pub const CLUSTER_REDIS_URL: &str = "redis://127.0.0.1:7101,redis://127.0.0.1:7102,redis://127.0.0.1:7103,redis://127.0.0.1:7104,redis://127.0.0.1:7105,redis://127.0.0.1:7106";
pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// The three nodes of the local RabbitMQ cluster `scripts/cluster up` starts.
pub const CLUSTER_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5710/%2f,amqp://guest:guest@127.0.0.1:5720/%2f,amqp://guest:guest@127.0.0.1:5730/%2f";
/// The PostgreSQL server; each test makes its own database on it.
pub const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432";
pub const JWT_SECRET: &str = "test-jwt-secret-0123456789abcdef0123";
pub const OTP_SECRET: &str = "test-otp-secret-0123456789abcdef0123";
pub const WATI_KEY: &str = "test-wati-key";
/// The secret in the receipts webhook's path of every test api.
pub const WEBHOOK_SECRET: &str = "test-webhook-secret-0123456789abcdef";
/// The path prefix a real WATI tenant URL carries; the sandbox must be reached through it.
pub const WATI_TENANT: &str = "/12345";

/// How long a test waits for an eventual outcome before failing.
pub const DEADLINE: Duration = Duration::from_secs(20);
/// Most recipients in one v3 call in tests (unless a test sets its own budgets).
pub const TEST_BATCH_MAX: u32 = 32;

/// Budgets for a test: `calls` per 10 s and `messages` per second (0 is no limit), with
/// `batch` recipients per v3 call. Set the same on the api and the worker.
pub fn budgets(version: WatiApiVersion, calls: u32, messages: u32, batch: u32) -> Budgets {
    otp_shared::budget::BudgetArgs {
        wati_api_version: version,
        wati_calls_per_10s: calls,
        whatsapp_messages_per_second: messages.to_string(),
        wati_channel_numbers: None,
        wati_channel_number: None,
        wati_batch_max: batch,
        sender_pause_seconds: 30,
    }
    .validate()
    .expect("valid budgets")
}

/// The most calls (or recipients, with `weight`) that any window of `window_ms`, from
/// one call's arrival at the sandbox on, holds among `log`.
pub fn busiest_window(
    log: &[wati_sandbox::CallRecord],
    window_ms: u64,
    weight: fn(&wati_sandbox::CallRecord) -> usize,
) -> usize {
    log.iter()
        .map(|start| {
            log.iter()
                .filter(|c| {
                    c.received_at_ms >= start.received_at_ms
                        && c.received_at_ms < start.received_at_ms + window_ms
                })
                .map(weight)
                .sum()
        })
        .max()
        .unwrap_or(0)
}

/// A listener on a free loopback port.
/// The worker's checked settings from its flags.
fn worker_config(args: Vec<String>) -> WorkerConfig {
    WorkerArgs::try_parse_from(args)
        .expect("worker arguments parse")
        .validate()
        .expect("worker settings are valid")
}

/// The number the tests' SMS come from.
pub const TWILIO_FROM: &str = "+15005550006";

/// The api's Twilio callback route under `api_url`.
pub fn twilio_callback_url(api_url: &str) -> String {
    format!("{api_url}/api/webhooks/twilio")
}

/// The SMS settings both processes share, as flags.
fn sms_args(callback_url: &str, countries: &str) -> Vec<String> {
    [
        "--sms-provider",
        "twilio",
        "--twilio-auth-token",
        wati_sandbox::DEFAULT_TWILIO_AUTH_TOKEN,
        "--twilio-status-callback-url",
        callback_url,
        "--sms-allowed-country-codes",
        countries,
    ]
    .map(str::to_owned)
    .to_vec()
}

async fn bind_loopback() -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port")
}

fn url_of(listener: &tokio::net::TcpListener) -> String {
    format!("http://{}", listener.local_addr().expect("bound address"))
}

/// Polls `probe` until it returns `Some`, or panics with `what` after `deadline`.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let give_up = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "gave up after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Connects to Redis at `url`, or fails the test saying Redis is down and how to start it.
pub async fn redis_or_fail(url: &str) -> RedisConn {
    let connected = tokio::time::timeout(
        Duration::from_secs(5),
        otp_shared::redis::conn::connect(url),
    )
    .await;
    match connected {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => panic!(
            "Redis is not reachable at {url} ({e}). These tests need the real Redis: start it with \
             `redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save \"\" --appendonly no`"
        ),
        Err(_) => panic!("Redis is not reachable at {url}: no answer within 5 s"),
    }
}

/// Connects to RabbitMQ at `url`, or fails the test saying RabbitMQ is down.
pub async fn rabbitmq_or_fail(url: &str) -> lapin::Connection {
    let connected = tokio::time::timeout(
        Duration::from_secs(5),
        otp_shared::amqp::connect(url, "otp-tests"),
    )
    .await;
    match connected {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => panic!(
            "RabbitMQ is not reachable ({e}). These tests need the real RabbitMQ on \
             127.0.0.1:5672: start it with `rabbitmq-server -detached`"
        ),
        Err(_) => panic!("RabbitMQ is not reachable: no answer within 5 s"),
    }
}

/// `CREATE`/`DROP DATABASE` cannot take a bound name; a test's name is its prefix,
/// lowercase letters and digits only, checked here.
fn database_statement(verb: &str, name: &str, tail: &str) -> sqlx::AssertSqlSafe<String> {
    assert!(
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
        "not a test database name: {name:?}"
    );
    sqlx::AssertSqlSafe(format!("{verb} {name} {tail}"))
}

/// Creates the database `name` on the test server, or fails the test saying PostgreSQL
/// is down and how to start it.
pub async fn database_or_fail(name: &str) -> String {
    use sqlx::Connection;
    let admin = format!("{POSTGRES_URL}/postgres");
    let connected =
        tokio::time::timeout(Duration::from_secs(5), sqlx::PgConnection::connect(&admin)).await;
    let mut conn = match connected {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => panic!(
            "PostgreSQL is not reachable at {admin} ({e}). These tests need the real PostgreSQL: \
             start it with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`"
        ),
        Err(_) => panic!("PostgreSQL is not reachable at {admin}: no answer within 5 s"),
    };
    sqlx::query(database_statement("CREATE DATABASE", name, ""))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("create the test database {name}: {e}"));
    let _ = conn.close().await;
    format!("{POSTGRES_URL}/{name}")
}

/// A running api or worker, stopped by [`Running::stop`].
pub struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    /// Base URL of its `/metrics` and `/healthz`.
    pub metrics_url: String,
}

impl Running {
    fn spawn<F>(run: impl FnOnce(oneshot::Receiver<()>) -> F) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel();
        Self {
            stop: Some(stop),
            task: tokio::spawn(run(stopped)),
            metrics_url: String::new(),
        }
    }

    /// Sends the shutdown signal and waits until the process has drained and returned.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Sends the shutdown signal without waiting.
    pub fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits until the process has returned, at most `deadline`.
    pub async fn finished_within(&mut self, deadline: Duration) -> bool {
        tokio::time::timeout(deadline, &mut self.task).await.is_ok()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a passive declare tells of a queue.
#[derive(Clone, Copy, Debug)]
pub struct QueueCounts {
    /// Messages ready for delivery (not those held unacked by consumers).
    pub ready: u32,
    pub consumers: u32,
}

/// One test's private world on the shared services.
pub struct TestEnv {
    pub prefix: String,
    /// The Redis this test's processes use: the local server, or the local cluster.
    pub redis_url: String,
    /// The RabbitMQ this test's processes use: the local server, or the local cluster.
    pub amqp_url: String,
    /// This test's own database (named like the prefix), dropped at the end.
    pub database_url: String,
    pub redis: RedisConn,
    pub amqp: lapin::Connection,
    pub sandbox: Sandbox,
    pub sandbox_url: String,
    pub http: reqwest::Client,
    pub api_url: String,
    _sandbox_task: Running,
}

impl TestEnv {
    /// Checks both services, then starts a sandbox on port 0.
    pub async fn new() -> Self {
        Self::with_wati_limit(0).await
    }

    /// Like [`TestEnv::new`], with the sandbox enforcing WATI's plan limit of
    /// `calls_per_10s` (0 is none).
    pub async fn with_wati_limit(calls_per_10s: u32) -> Self {
        Self::build(calls_per_10s, REDIS_URL, AMQP_URL).await
    }

    /// Like [`TestEnv::new`], on the local Redis Cluster (`scripts/cluster up`); fails
    /// the test when the cluster is not up.
    pub async fn on_redis_cluster() -> Self {
        let reached = tokio::time::timeout(
            Duration::from_secs(5),
            otp_shared::redis::conn::connect(CLUSTER_REDIS_URL),
        )
        .await;
        if !matches!(reached, Ok(Ok(_))) {
            panic!(
                "the local Redis Cluster is not up (127.0.0.1:7101-7106): run `scripts/cluster up`"
            );
        }
        Self::build(0, CLUSTER_REDIS_URL, AMQP_URL).await
    }

    /// Like [`TestEnv::new`], on the local RabbitMQ cluster (`scripts/cluster up`),
    /// every node named in `AMQP_URL`; fails the test when the cluster is not up.
    pub async fn on_rabbitmq_cluster() -> Self {
        for node in CLUSTER_AMQP_URL.split(',') {
            let reached = tokio::time::timeout(
                Duration::from_secs(5),
                otp_shared::amqp::connect(node, "otp-tests"),
            )
            .await;
            match reached {
                Ok(Ok(connection)) => {
                    let _ = connection.close(200, "checked".into()).await;
                }
                _ => panic!(
                    "the local RabbitMQ cluster is not up (no answer from {}): run `scripts/cluster up`",
                    node.rsplit('@').next().unwrap_or(node)
                ),
            }
        }
        Self::build(0, REDIS_URL, CLUSTER_AMQP_URL).await
    }

    async fn build(calls_per_10s: u32, redis_url: &str, amqp_url: &str) -> Self {
        let redis = redis_or_fail(redis_url).await;
        let amqp = rabbitmq_or_fail(amqp_url).await;
        let prefix = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let database_url = database_or_fail(&prefix).await;
        let sandbox = Sandbox::new(SandboxConfig {
            api_key: WATI_KEY.into(),
            latency: Duration::ZERO,
            calls_per_10s,
            ..SandboxConfig::default()
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a port for the sandbox");
        let sandbox_url = format!("http://{}", listener.local_addr().expect("sandbox address"));
        let served = sandbox.clone();
        let sandbox_task = Running::spawn(move |stopped| async move {
            let _ = wati_sandbox::serve(served, listener, async {
                let _ = stopped.await;
            })
            .await;
        });
        Self {
            prefix,
            redis_url: redis_url.to_owned(),
            amqp_url: amqp_url.to_owned(),
            database_url,
            redis,
            amqp,
            sandbox,
            sandbox_url,
            http: reqwest::Client::new(),
            api_url: String::new(),
            _sandbox_task: sandbox_task,
        }
    }

    /// The settings both processes share, as flags: this test's services and prefix,
    /// and no budgets (tests of the budgets set their own).
    fn common_args(&self, binary: &str) -> Vec<String> {
        let batch = TEST_BATCH_MAX.to_string();
        [
            binary,
            "--redis-url",
            &self.redis_url,
            "--amqp-url",
            &self.amqp_url,
            "--key-prefix",
            &self.prefix,
            "--queue-prefix",
            &self.prefix,
            "--otp-secret",
            OTP_SECRET,
            "--wati-calls-per-10s",
            "0",
            "--whatsapp-messages-per-second",
            "0",
            "--wati-batch-max",
            &batch,
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// The api's settings for this test, as the binary would read them.
    pub fn api_config(&self) -> ApiConfig {
        self.api_config_with(&[])
    }

    /// [`TestEnv::api_config`] with more flags, e.g. `["--jwt-algorithm", "EdDSA"]`.
    pub fn api_config_with(&self, extra: &[&str]) -> ApiConfig {
        let mut args = self.common_args("api");
        args.extend(
            [
                "--jwt-secret",
                JWT_SECRET,
                "--resend-cooldown-seconds",
                "0",
                "--ip-requests-per-minute",
                "0",
                "--ip-network-requests-per-minute",
                "0",
                "--wati-webhook-secret",
                WEBHOOK_SECRET,
                "--database-url",
                &self.database_url,
            ]
            .map(str::to_owned),
        );
        args.extend(extra.iter().map(|&arg| arg.to_owned()));
        ApiArgs::try_parse_from(args)
            .expect("api arguments parse")
            .validate()
            .expect("api settings are valid")
    }

    /// The worker's settings for this test: WATI is the sandbox, behind a tenant path
    /// (v3 needs none, but a base URL with a path prefix must work for both).
    pub fn worker_config(&self) -> WorkerConfig {
        worker_config(self.worker_args())
    }

    /// [`TestEnv::worker_config`] with more flags.
    pub fn worker_config_with(&self, extra: &[&str]) -> WorkerConfig {
        let mut args = self.worker_args();
        args.extend(extra.iter().map(|&arg| arg.to_owned()));
        worker_config(args)
    }

    /// The worker's flags for this test (see [`TestEnv::worker_config`]).
    fn worker_args(&self) -> Vec<String> {
        let base_url = format!("{}{WATI_TENANT}", self.sandbox_url);
        let mut args = self.common_args("worker");
        args.extend(
            [
                "--wati-base-url",
                &base_url,
                "--wati-api-key",
                WATI_KEY,
                "--wati-timeout-ms",
                "2000",
                "--retry-base-delay-ms",
                "50",
                "--retry-max-delay-ms",
                "400",
                "--worker-concurrency",
                "64",
            ]
            .map(str::to_owned),
        );
        args
    }

    /// Starts an api with `config` on port 0, waits until it answers, and returns it
    /// with its base URL. Several may run side by side on the same prefix.
    pub async fn spawn_api(&self, config: ApiConfig) -> (Running, String) {
        self.spawn_api_on(|_| config).await
    }

    /// Like [`TestEnv::spawn_api`], with the settings made from the api's own base URL
    /// (for settings that name it, such as Twilio's callback URL).
    pub async fn spawn_api_on(&self, config: impl FnOnce(&str) -> ApiConfig) -> (Running, String) {
        let listeners = otp_api::Listeners {
            http: bind_loopback().await,
            metrics: bind_loopback().await,
        };
        let url = url_of(&listeners.http);
        let config = config(&url);
        let metrics_url = url_of(&listeners.metrics);
        let mut running = Running::spawn(move |stopped| async move {
            if let Err(e) = otp_api::run(config, listeners, async {
                let _ = stopped.await;
            })
            .await
            {
                panic!("api failed: {}", otp_shared::telemetry::error_chain(&e));
            }
        });
        running.metrics_url = metrics_url;
        let health = format!("{url}/healthz");
        eventually("the api to answer /healthz", DEADLINE, || async {
            self.http
                .get(&health)
                .send()
                .await
                .ok()
                .filter(|r| r.status() == 200)
        })
        .await;
        (running, url)
    }

    /// Starts the api that the request helpers below talk to.
    pub async fn start_api_with(&mut self, config: ApiConfig) -> Running {
        let (running, url) = self.spawn_api(config).await;
        self.api_url = url;
        running
    }

    /// Starts the api the request helpers talk to with SMS on: SMS may go to the
    /// calling codes in `countries`, and Twilio's callbacks come to this api.
    pub async fn start_sms_api(&mut self, countries: &str, extra: &[&str]) -> Running {
        self.start_sms_api_with(countries, extra, |_| {}).await
    }

    /// [`Self::start_sms_api`], its settings changed by `change` (another broker URL, …).
    pub async fn start_sms_api_with(
        &mut self,
        countries: &str,
        extra: &[&str],
        change: impl FnOnce(&mut ApiConfig),
    ) -> Running {
        let (running, url) = self
            .spawn_api_on(|url| {
                let mut args = sms_args(&twilio_callback_url(url), countries);
                args.extend(extra.iter().map(|&arg| arg.to_owned()));
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let mut config = self.api_config_with(&args);
                change(&mut config);
                config
            })
            .await;
        self.api_url = url;
        running
    }

    /// The worker's settings with SMS on, through the sandbox's Twilio: SMS may go to
    /// `countries`, status callbacks go to the api the request helpers talk to, and a
    /// WhatsApp send without a delivered receipt goes by SMS after `fallback_after`
    /// (zero: only on a failure).
    pub fn sms_worker_config(&self, countries: &str, fallback_after: Duration) -> WorkerConfig {
        let mut args = self.worker_args();
        args.extend(sms_args(&twilio_callback_url(&self.api_url), countries));
        let after = fallback_after.as_secs().to_string();
        args.extend(
            [
                "--twilio-base-url",
                &self.sandbox_url,
                "--twilio-account-sid",
                wati_sandbox::DEFAULT_TWILIO_ACCOUNT_SID,
                "--twilio-from",
                TWILIO_FROM,
                "--fallback-after-seconds",
                &after,
            ]
            .map(str::to_owned),
        );
        worker_config(args)
    }

    pub async fn start_api(&mut self) -> Running {
        let config = self.api_config();
        self.start_api_with(config).await
    }

    /// The receipts webhook of the api the request helpers talk to.
    pub fn webhook_url(&self) -> String {
        format!("{}/api/webhooks/wati/{WEBHOOK_SECRET}", self.api_url)
    }

    /// Makes the sandbox post WATI's receipts to this test's api: `delivered` after
    /// `delivered_after`, `read` after `read_after`, each event `repeat` times, read
    /// before delivered if `reorder`.
    pub fn enable_receipts(
        &self,
        delivered_after: Duration,
        read_after: Duration,
        repeat: u32,
        reorder: bool,
    ) {
        self.sandbox.set_receipts(wati_sandbox::ReceiptSettings {
            webhook_url: Some(self.webhook_url()),
            delivered_after,
            read_after,
            repeat,
            reorder,
        });
    }

    /// Posts `event` to this test's receipts webhook with `secret`; the status and body.
    pub async fn post_receipt(&self, secret: &str, event: &Value) -> (u16, Value) {
        self.post(&format!("/api/webhooks/wati/{secret}"), event.clone())
            .await
    }

    /// Starts a worker with `config`.
    pub async fn start_worker_with(&self, config: WorkerConfig) -> Running {
        let metrics_listener = bind_loopback().await;
        let metrics_url = url_of(&metrics_listener);
        let mut running = Running::spawn(move |stopped| async move {
            if let Err(e) = otp_worker::run(config, metrics_listener, async {
                let _ = stopped.await;
            })
            .await
            {
                panic!("worker failed: {}", otp_shared::telemetry::error_chain(&e));
            }
        });
        running.metrics_url = metrics_url;
        running
    }

    pub async fn start_worker(&self) -> Running {
        self.start_worker_with(self.worker_config()).await
    }

    /// Waits until a worker consumes the send queue (it has declared both queues by
    /// then), for tests that publish to the queue themselves.
    pub async fn wait_for_a_consumer(&self) {
        let send = self.queues().send;
        eventually("a worker to consume the send queue", DEADLINE, || async {
            self.queue_counts(&send)
                .await
                .filter(|c| c.consumers > 0)
                .map(drop)
        })
        .await;
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.post_to(&self.api_url, path, body).await
    }

    /// Posts JSON to the api at `base_url`; the status and the JSON body.
    pub async fn post_to(&self, base_url: &str, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{base_url}{path}"))
            .json(&body)
            .send()
            .await
            .expect("api reachable");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn send_otp(&self, phone: &str) -> (u16, Value) {
        self.post("/api/auth/send-otp", json!({ "phone": phone }))
            .await
    }

    /// Sends a code to `phone`, expects `202`, and returns the request id.
    pub async fn send_accepted(&self, phone: &str) -> String {
        let (status, body) = self.send_otp(phone).await;
        assert_eq!(status, 202, "send-otp for {phone}: {body}");
        body["requestId"].as_str().expect("requestId").to_owned()
    }

    /// Sends a code to `phone`, waits for the sandbox to get it, and verifies it: the
    /// 200 body (with `token` and `refreshToken`).
    pub async fn log_in(&self, phone: &str) -> Value {
        let before = self.sandbox.messages(phone).len();
        self.send_accepted(phone).await;
        let code = self.wait_for_messages(phone, before + 1).await[before]
            .code
            .clone();
        let (status, body) = self.verify(phone, &code).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    pub async fn verify(&self, phone: &str, code: &str) -> (u16, Value) {
        self.post(
            "/api/auth/verify-otp",
            json!({ "phone": phone, "code": code }),
        )
        .await
    }

    /// The samples `running` (an api or a worker) serves on `/metrics`.
    pub async fn metrics_of(&self, running: &Running) -> Vec<prometheus::Sample> {
        let text = self
            .http
            .get(format!("{}/metrics", running.metrics_url))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        prometheus::parse(&text)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut request = self.http.get(format!("{}{path}", self.api_url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("api reachable");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Logs out with `token`; the status code.
    pub async fn logout(&self, token: &str) -> u16 {
        self.http
            .post(format!("{}/api/auth/logout", self.api_url))
            .bearer_auth(token)
            .send()
            .await
            .expect("api reachable")
            .status()
            .as_u16()
    }

    /// A copy of the next job on the send queue, which stays there (taken and handed
    /// back). Waits for one to arrive.
    pub async fn peek_send_queue(&self) -> Vec<u8> {
        let send = self.queues().send;
        eventually("a job on the send queue", DEADLINE, || {
            self.peek_queue(&send)
        })
        .await
    }

    /// A copy of the head of queue `name`, which stays there (taken and handed back);
    /// `None` when it is empty or cannot be read.
    pub async fn peek_queue(&self, name: &str) -> Option<Vec<u8>> {
        // Held until the message is handed back: a channel dropped closes.
        let channel = self.channel().await;
        let message = channel
            .basic_get(
                name.into(),
                lapin::options::BasicGetOptions { no_ack: false },
            )
            .await
            .ok()??;
        let data = message.delivery.data.clone();
        message
            .delivery
            .nack(lapin::options::BasicNackOptions {
                requeue: true,
                ..Default::default()
            })
            .await
            .ok()?;
        Some(data)
    }

    /// Publishes `body` to the send queue, as if a producer had, and waits for the broker.
    pub async fn publish_to_send_queue(&self, body: &[u8]) {
        self.publish_to(&self.queues().send, body).await;
    }

    /// Publishes `body` to queue `name`, and waits for the broker.
    pub async fn publish_to(&self, name: &str, body: &[u8]) {
        self.channel()
            .await
            .basic_publish(
                "".into(),
                name.into(),
                Default::default(),
                body,
                Default::default(),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
    }

    /// Ready messages and consumers of queue `name`; `None` if it cannot be read.
    pub async fn queue_counts(&self, name: &str) -> Option<QueueCounts> {
        let queue = self
            .channel()
            .await
            .queue_declare(
                name.into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await
            .ok()?;
        Some(QueueCounts {
            ready: queue.message_count(),
            consumers: queue.consumer_count(),
        })
    }

    /// Waits until the sandbox holds `count` messages for `phone`; returns them all.
    pub async fn wait_for_messages(&self, phone: &str, count: usize) -> Vec<wati_sandbox::Message> {
        eventually(
            &format!("{count} message(s) to {phone} at the sandbox"),
            DEADLINE,
            || async {
                let messages = self.sandbox.messages(phone);
                (messages.len() >= count).then_some(messages)
            },
        )
        .await
    }

    /// Waits until the delivery status of `request_id` is `state`; returns the body.
    pub async fn wait_for_status(&self, request_id: &str, state: &str) -> Value {
        let path = format!("/api/auth/otp-status/{request_id}");
        eventually(
            &format!("status {state} for {request_id}"),
            DEADLINE,
            || async {
                let (code, body) = self.get(&path, None).await;
                (code == 200 && body["status"] == state).then_some(body)
            },
        )
        .await
    }

    /// Every key this test made in Redis.
    pub async fn redis_keys(&self) -> Vec<String> {
        scan_keys(&mut self.redis.clone(), &self.prefix)
            .await
            .expect("scan redis")
    }

    /// A channel on the shared broker, for reading or writing this test's queues.
    pub async fn channel(&self) -> lapin::Channel {
        self.amqp.create_channel().await.expect("open a channel")
    }

    pub fn queues(&self) -> otp_shared::amqp::QueueNames {
        otp_shared::amqp::QueueNames::new(&self.prefix)
    }

    pub fn keys(&self) -> otp_shared::redis::keys::Keys {
        otp_shared::redis::keys::Keys::new(&self.prefix)
    }

    /// Stores a new code for `phone` through the api's own store, as send-otp does, with
    /// a life of `ttl`, and returns the job the api would publish (nothing is published).
    /// For tests of the worker's core without a broker.
    pub async fn stored_job(&self, phone: &str, ttl: Duration) -> otp_shared::job::SendJob {
        let config = self.api_config();
        let store = otp_api::store::OtpStore::new(
            self.redis.clone(),
            self.keys(),
            std::sync::Arc::new(otp_shared::seal::CodeSealer::new(OTP_SECRET.as_bytes())),
            otp_api::store::StorePolicy {
                ttl,
                max_attempts: config.otp_max_attempts,
                wrong_guesses_per_phone: config.wrong_guesses_per_phone,
                limits: config.limits,
                unchecked_sends_per_hour: 0,
            },
        );
        let phone = otp_shared::phone::PhoneNumber::from_e164_digits(phone).expect("a phone");
        let code = otp_api::code::generate(6).expect("a code");
        let decision = store
            .begin_send(
                &phone,
                &code,
                uuid::Uuid::new_v4(),
                otp_api::store::HowSent::default(),
            )
            .await
            .expect("the store takes the send");
        let otp_api::store::SendDecision::Accepted(send) = decision else {
            panic!("the store refused a send for {phone}");
        };
        store
            .index_request(&phone, send.request_id)
            .await
            .expect("the store indexes the send");
        otp_shared::job::SendJob::new(send.request_id, send.code_id, phone, otp_shared::now_ms())
    }

    /// The worker's core as the worker builds it (batcher included) on this test's
    /// Redis and sandbox, without a broker; it stops when the sender says `true` or
    /// is dropped.
    pub fn deliverer(
        &self,
        config: &WorkerConfig,
        redis: RedisConn,
    ) -> (
        otp_worker::delivery::Deliverer,
        tokio::sync::watch::Sender<bool>,
    ) {
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let wati = otp_worker::wati::WatiClient::new(&config.wati).expect("the WATI client builds");
        let (deliverer, _batcher) =
            otp_worker::delivery::Deliverer::start(config, wati, redis, stopping);
        (deliverer, stop)
    }

    /// Takes the next WATI call slot of this test's budget, as another worker's call
    /// would, so that sends arriving now wait for the slot after it and share a call.
    pub async fn occupy_call_slot(&self, budgets: &Budgets) {
        let budget =
            otp_shared::redis::wati_budget::Budget::new(self.redis.clone(), self.keys(), budgets);
        let claim = budget.claim(1).await.expect("claim a call slot");
        assert!(
            matches!(claim, otp_shared::redis::wati_budget::Claim::Granted { .. }),
            "the call slot was free: {claim:?}"
        );
    }
}

impl Drop for TestEnv {
    /// Removes this test's keys and queues. Runs on its own thread and runtime because
    /// it may run while the test's runtime is unwinding from a panic.
    fn drop(&mut self) {
        let prefix = self.prefix.clone();
        let amqp_url = self.amqp_url.clone();
        let redis_url = self.redis_url.clone();
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(clean_up(&prefix, &redis_url, &amqp_url));
        })
        .join();
    }
}

/// Every key under `prefix`.
async fn scan_keys(
    conn: &mut impl redis::aio::ConnectionLike,
    prefix: &str,
) -> redis::RedisResult<Vec<String>> {
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

async fn clean_up(prefix: &str, redis_url: &str, amqp_url: &str) {
    delete_keys(prefix, redis_url).await;
    delete_queues(prefix, amqp_url).await;
    drop_database(prefix).await;
}

async fn drop_database(name: &str) {
    use sqlx::Connection;
    let Ok(mut conn) = sqlx::PgConnection::connect(&format!("{POSTGRES_URL}/postgres")).await
    else {
        return;
    };
    let _ = sqlx::query(database_statement(
        "DROP DATABASE IF EXISTS",
        name,
        "WITH (FORCE)",
    ))
    .execute(&mut conn)
    .await;
    let _ = conn.close().await;
}

/// Deletes every key under `prefix` on each node `redis_url` names (a cluster's keys
/// are spread over its masters; a replica refuses the delete, its master does it).
async fn delete_keys(prefix: &str, redis_url: &str) {
    for node in redis_url.split(',') {
        let Ok(mut conn) = otp_shared::redis::conn::connect_node(node).await else {
            continue;
        };
        let Ok(keys) = scan_keys(&mut conn, prefix).await else {
            continue;
        };
        // A cluster refuses keys of several slots in one command: one key per DEL there.
        let batch = if redis_url.contains(',') { 1 } else { 1000 };
        for keys in keys.chunks(batch) {
            let _: redis::RedisResult<()> =
                redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
        }
    }
}

async fn delete_queues(prefix: &str, amqp_url: &str) {
    let Ok(conn) = otp_shared::amqp::connect(amqp_url, "otp-tests-cleanup").await else {
        return;
    };
    let queues = otp_shared::amqp::QueueNames::new(prefix);
    for name in queues.all() {
        if let Ok(channel) = conn.create_channel().await {
            let _ = channel
                .queue_delete(name.as_str().into(), Default::default())
                .await;
        }
    }
    let _ = conn.close(200, "done".into()).await;
}
