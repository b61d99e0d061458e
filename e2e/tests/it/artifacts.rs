//! The files we ship for operators stay true to the code, one fact a test: every metric
//! the dashboard and the alert rules name is exported; docker-compose and Prometheus
//! agree with the settings the binaries read and the addresses they serve; the OpenAPI
//! document and the Postman collection list exactly the routes the api serves.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use clap::CommandFactory;
use otp_e2e::TestEnv;
use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

fn repo_file(path: &str) -> String {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("read {}: {e}", full.display()))
}

fn yaml(path: &str) -> Yaml {
    YamlLoader::load_from_str(&repo_file(path))
        .unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{path} is empty"))
}

/// PromQL keywords, and aggregation operators (which may be followed by `by`, not `(`).
const PROMQL_WORDS: &[&str] = &[
    "by",
    "without",
    "and",
    "or",
    "unless",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
];

/// Metric names in a PromQL expression: identifiers outside strings, label matchers,
/// ranges and `by (...)` lists that are not functions or keywords.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let mut skip_group = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' => {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    i += 1;
                }
                i += 1;
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                while i < chars.len() && chars[i] != close {
                    if chars[i] == '"' {
                        i += 1;
                        while i < chars.len() && chars[i] != '"' {
                            i += 1;
                        }
                    }
                    i += 1;
                }
                i += 1;
            }
            '(' if skip_group => {
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                skip_group = false;
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let next = chars[i..].iter().find(|c| !c.is_whitespace());
                if word == "by" || word == "without" {
                    skip_group = true;
                } else if next != Some(&'(') && !PROMQL_WORDS.contains(&word.as_str()) {
                    names.insert(word);
                }
            }
            c if c.is_ascii_digit() || c == '.' => {
                // A number (1e-9, 0.8): letters inside it are not names.
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '.' || chars[i] == '-')
                {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// The exported metric a series name belongs to, if any.
fn exported(name: &str) -> Option<&'static str> {
    let base = ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name);
    otp_shared::metrics::ALL
        .iter()
        .copied()
        .find(|m| *m == name || *m == base)
}

fn collect_exprs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", Value::String(expr)) => out.push(expr.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

#[test]
fn the_metric_names_reader_finds_metrics_and_nothing_else() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (le, route) (rate(otp_x_bucket{a="b"}[5m]))) / clamp_min(sum(rate(y_total[1m])), 1e-9) unless z > 0.8 * 300"#,
    );
    assert_eq!(
        names,
        BTreeSet::from(["otp_x_bucket".into(), "y_total".into(), "z".into()])
    );
}

#[test]
fn every_metric_on_the_dashboard_and_in_the_rules_is_exported_and_every_export_is_shown() {
    let dashboard: Value = serde_json::from_str(&repo_file("grafana/dashboards/otp-pipeline.json"))
        .expect("dashboard JSON");
    let mut dashboard_exprs = Vec::new();
    collect_exprs(&dashboard, &mut dashboard_exprs);
    assert!(
        dashboard_exprs.len() >= 12,
        "{} queries",
        dashboard_exprs.len()
    );

    let rules = yaml("prometheus/alerts.yml");
    let mut alerts = BTreeMap::new();
    for group in rules["groups"].as_vec().expect("groups") {
        for rule in group["rules"].as_vec().expect("rules") {
            let name = rule["alert"].as_str().expect("alert name").to_owned();
            alerts.insert(name, rule["expr"].as_str().expect("expr").to_owned());
        }
    }
    for required in [
        "OtpDeliveryFailureRatioHigh",
        "OtpQueueAgeNearTtl",
        "OtpNoDeliveriesWhileRequestsArrive",
        "OtpWatiAuthFailures",
        "OtpWatiRateLimited",
        "OtpSendsOverCapacity",
        "OtpWhatsAppDeliveredRatioLow",
        "OtpNoReceipts",
    ] {
        assert!(alerts.contains_key(required), "alert {required}");
    }

    let mut shown = BTreeSet::new();
    for (origin, expr) in dashboard_exprs
        .iter()
        .map(|e| ("dashboard", e))
        .chain(alerts.values().map(|e| ("alerts.yml", e)))
    {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{origin}: no metric in {expr}");
        for name in names {
            let metric = exported(&name)
                .unwrap_or_else(|| panic!("{origin}: {name} is not exported by the code ({expr})"));
            if origin == "dashboard" {
                shown.insert(metric);
            }
        }
    }
    let missing: Vec<_> = otp_shared::metrics::ALL
        .iter()
        .filter(|m| !shown.contains(*m))
        .collect();
    assert!(missing.is_empty(), "exported but on no panel: {missing:?}");
}

fn env_names(command: clap::Command) -> BTreeSet<String> {
    command
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect()
}

/// A service's environment, with YAML merge keys (`<<`) applied.
fn environment(service: &Yaml) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let Some(map) = service["environment"].as_hash() else {
        return env;
    };
    let scalar = |v: &Yaml| match v {
        Yaml::String(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        other => panic!("unexpected environment value {other:?}"),
    };
    for (key, value) in map {
        if key.as_str() == Some("<<") {
            let merged = match value {
                Yaml::Array(items) => items.clone(),
                single => vec![single.clone()],
            };
            for hash in merged.iter().filter_map(Yaml::as_hash) {
                for (k, v) in hash {
                    env.entry(k.as_str().expect("key").to_owned())
                        .or_insert_with(|| scalar(v));
                }
            }
        } else {
            env.insert(key.as_str().expect("key").to_owned(), scalar(value));
        }
    }
    env
}

fn port_of(addr: &str) -> &str {
    addr.rsplit(':').next().expect("a port")
}

/// The compose file, read once per test.
struct Compose {
    file: Yaml,
}

impl Compose {
    fn read() -> Self {
        Self {
            file: yaml("docker-compose.yml"),
        }
    }

    fn names(&self) -> BTreeSet<&str> {
        self.file["services"]
            .as_hash()
            .expect("services")
            .keys()
            .filter_map(Yaml::as_str)
            .collect()
    }

    fn service(&self, name: &str) -> &Yaml {
        &self.file["services"][name]
    }

    /// A service's environment, merge keys applied.
    fn env(&self, name: &str) -> BTreeMap<String, String> {
        environment(self.service(name))
    }
}

#[test]
fn the_stack_has_its_services_each_healthy_before_its_dependents_start() {
    let compose = Compose::read();
    let names = compose.names();
    assert_eq!(
        names,
        BTreeSet::from([
            "redis",
            "rabbitmq",
            "postgres",
            "wati-sandbox",
            "api",
            "worker",
            "prometheus",
            "grafana"
        ])
    );
    for name in &names {
        let service = compose.service(name);
        assert!(
            !service["healthcheck"]["test"].is_badvalue(),
            "{name} has a health check"
        );
        if let Some(deps) = service["depends_on"].as_hash() {
            for dep in deps.keys() {
                let dep = dep.as_str().expect("name");
                assert!(names.contains(dep), "{name} depends on unknown {dep}");
                assert_eq!(
                    service["depends_on"][dep]["condition"].as_str(),
                    Some("service_healthy")
                );
            }
        }
    }
    assert_eq!(
        compose.service("worker")["deploy"]["replicas"].as_i64(),
        Some(2)
    );
}

#[test]
fn every_variable_the_compose_file_sets_is_one_its_binary_reads() {
    let compose = Compose::read();
    for (who, known) in [
        ("api", env_names(otp_api::config::ApiArgs::command())),
        (
            "worker",
            env_names(otp_worker::config::WorkerArgs::command()),
        ),
        (
            "wati-sandbox",
            env_names(wati_sandbox::SandboxArgs::command()),
        ),
    ] {
        for name in compose.env(who).keys() {
            assert!(
                known.contains(name),
                "{who} sets {name}, which it does not read"
            );
        }
    }
}

#[test]
fn the_api_and_the_workers_get_every_required_setting_and_one_otp_secret() {
    let compose = Compose::read();
    let (api, worker) = (compose.env("api"), compose.env("worker"));
    for required in [
        "JWT_SECRET",
        "OTP_SECRET",
        "REDIS_URL",
        "AMQP_URL",
        "DATABASE_URL",
    ] {
        assert!(api.contains_key(required), "api needs {required}");
    }
    for required in [
        "OTP_SECRET",
        "WATI_BASE_URL",
        "WATI_API_KEY",
        "REDIS_URL",
        "AMQP_URL",
    ] {
        assert!(worker.contains_key(required), "worker needs {required}");
    }
    assert_eq!(
        api["OTP_SECRET"], worker["OTP_SECRET"],
        "api and worker share OTP_SECRET"
    );
    assert!(api["OTP_SECRET"].len() >= 32 && api["JWT_SECRET"].len() >= 32);
}

#[test]
fn the_queues_are_quorum_queues_on_a_rabbitmq_that_dead_letters_at_least_once() {
    let compose = Compose::read();
    // Both declare the send queue: they must agree on its type, and RabbitMQ must be
    // new enough for quorum queues with at-least-once dead-lettering (3.10).
    for who in ["api", "worker"] {
        assert_eq!(
            compose.env(who).get("AMQP_QUEUE_TYPE").map(String::as_str),
            Some("quorum"),
            "{who}"
        );
    }
    let image = compose.service("rabbitmq")["image"]
        .as_str()
        .expect("an image");
    let version: Vec<u32> = image
        .trim_start_matches("rabbitmq:")
        .split(['.', '-'])
        .take(2)
        .filter_map(|part| part.parse().ok())
        .collect();
    assert!(
        version >= vec![3, 10],
        "{image} has no at-least-once dead-lettering"
    );
}

#[test]
fn the_api_logs_in_to_the_postgres_service_which_keeps_its_data_on_a_volume() {
    let compose = Compose::read();
    let (api, postgres) = (compose.env("api"), compose.env("postgres"));
    assert_eq!(
        api["DATABASE_URL"],
        format!(
            "postgres://{}:{}@postgres:5432/{}",
            postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"]
        )
    );
    assert!(!compose.service("api")["depends_on"]["postgres"].is_badvalue());
    assert!(
        compose.service("postgres")["volumes"][0]
            .as_str()
            .is_some_and(|v| v.ends_with(":/var/lib/postgresql/data")),
        "PostgreSQL keeps its data on a volume"
    );
}

#[test]
fn the_workers_reach_the_sandbox_and_the_sandbox_posts_receipts_to_the_api() {
    let compose = Compose::read();
    let (api, worker, sandbox) = (
        compose.env("api"),
        compose.env("worker"),
        compose.env("wati-sandbox"),
    );
    assert_eq!(worker["WATI_API_KEY"], sandbox["WATI_API_KEY"]);
    assert!(
        worker["WATI_BASE_URL"].starts_with(&format!(
            "http://wati-sandbox:{}",
            port_of(&sandbox["SANDBOX_ADDR"])
        )),
        "the worker reaches the sandbox"
    );
    assert!(api["WATI_WEBHOOK_SECRET"].len() >= 32);
    assert_eq!(
        sandbox["SANDBOX_WEBHOOK_URL"],
        format!(
            "http://api:{}/api/webhooks/wati/{}",
            port_of(&api["API_ADDR"]),
            api["WATI_WEBHOOK_SECRET"]
        ),
        "the sandbox posts its receipts to the api's webhook"
    );
}

#[test]
fn the_workers_template_is_one_the_sandbox_has_approved_with_its_parameter() {
    let compose = Compose::read();
    let (worker, sandbox) = (compose.env("worker"), compose.env("wati-sandbox"));
    let templates = wati_sandbox::templates::parse(&sandbox["SANDBOX_TEMPLATES"])
        .expect("the sandbox's templates");
    let name = &worker["WATI_TEMPLATE_NAME"];
    let template = templates
        .iter()
        .find(|t| t.name == *name)
        .unwrap_or_else(|| panic!("the sandbox has no template {name}"));
    assert!(template.approved());
    assert_eq!(template.category, "AUTHENTICATION");
    assert_eq!(template.params, [worker["WATI_TEMPLATE_PARAM"].clone()]);
}

#[test]
fn admission_and_delivery_count_with_the_same_budgets() {
    let compose = Compose::read();
    let (api, worker, sandbox) = (
        compose.env("api"),
        compose.env("worker"),
        compose.env("wati-sandbox"),
    );
    for budget in [
        "WATI_API_VERSION",
        "WATI_CALLS_PER_10S",
        "WHATSAPP_MESSAGES_PER_SECOND",
        "WATI_BATCH_MAX",
    ] {
        assert!(api.contains_key(budget), "api needs {budget}");
        assert_eq!(api[budget], worker[budget], "one {budget}");
    }
    assert_eq!(
        sandbox["SANDBOX_CALLS_PER_10S"], worker["WATI_CALLS_PER_10S"],
        "the sandbox enforces the plan the workers keep to"
    );
    let concurrency: u32 = worker["WORKER_CONCURRENCY"].parse().expect("a number");
    let batch: u32 = worker["WATI_BATCH_MAX"].parse().expect("a number");
    assert!(
        concurrency >= batch,
        "a worker holds enough jobs to fill a call"
    );
}

#[test]
fn only_the_api_is_published_and_grafana_on_loopback() {
    // Redis, RabbitMQ, PostgreSQL, Prometheus, the metrics ports and the sandbox (which
    // hands out every code) stay inside the stack's network.
    let compose = Compose::read();
    let published: BTreeMap<&str, Vec<&str>> = compose
        .names()
        .into_iter()
        .filter_map(|name| {
            let ports: Vec<&str> = compose.service(name)["ports"]
                .as_vec()?
                .iter()
                .filter_map(Yaml::as_str)
                .collect();
            Some((name, ports))
        })
        .collect();
    let api_port = port_of(&compose.env("api")["API_ADDR"]).to_owned();
    assert_eq!(
        published,
        BTreeMap::from([
            ("api", vec![format!("{api_port}:{api_port}").as_str()]),
            ("grafana", vec!["127.0.0.1:3000:3000"]),
        ])
    );
}

#[test]
fn every_backing_service_has_a_password_the_processes_know_and_none_is_a_default() {
    let compose = Compose::read();
    let redis_command: Vec<&str> = compose.service("redis")["command"]
        .as_vec()
        .expect("redis command")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    let redis_password = redis_command
        .iter()
        .position(|arg| *arg == "--requirepass")
        .and_then(|i| redis_command.get(i + 1))
        .expect("Redis requires a password");
    let rabbitmq = compose.env("rabbitmq");
    for who in ["api", "worker"] {
        let env = compose.env(who);
        assert_eq!(
            env["REDIS_URL"],
            format!("redis://:{redis_password}@redis:6379")
        );
        assert_eq!(
            env["AMQP_URL"],
            format!(
                "amqp://{}:{}@rabbitmq:5672/%2f",
                rabbitmq["RABBITMQ_DEFAULT_USER"], rabbitmq["RABBITMQ_DEFAULT_PASS"]
            )
        );
    }
    assert_ne!(rabbitmq["RABBITMQ_DEFAULT_USER"], "guest");
    assert_ne!(
        compose.env("grafana")["GF_SECURITY_ADMIN_PASSWORD"],
        "admin"
    );
}

#[test]
fn a_stack_with_the_sandbox_is_a_development_stack() {
    // DEV_MODE lets the placeholder secrets and plain HTTP to the sandbox through.
    let compose = Compose::read();
    let (api, worker) = (compose.env("api"), compose.env("worker"));
    assert!(worker["WATI_BASE_URL"].starts_with("http://wati-sandbox:"));
    assert_eq!(api["DEV_MODE"], "true");
    assert_eq!(worker["DEV_MODE"], "true");
}

#[test]
fn prometheus_scrapes_what_the_processes_serve_and_loads_the_rules() {
    let compose = Compose::read();
    let (api, worker) = (compose.env("api"), compose.env("worker"));
    let prometheus = yaml("prometheus/prometheus.yml");
    let jobs: BTreeMap<&str, &Yaml> = prometheus["scrape_configs"]
        .as_vec()
        .expect("scrape_configs")
        .iter()
        .map(|job| (job["job_name"].as_str().expect("job_name"), job))
        .collect();
    assert_eq!(
        jobs["api"]["static_configs"][0]["targets"][0].as_str(),
        Some(format!("api:{}", port_of(&api["METRICS_ADDR"])).as_str())
    );
    assert_eq!(
        jobs["worker"]["dns_sd_configs"][0]["names"][0].as_str(),
        Some("worker")
    );
    assert_eq!(
        jobs["worker"]["dns_sd_configs"][0]["port"]
            .as_i64()
            .map(|p| p.to_string()),
        Some(port_of(&worker["METRICS_ADDR"]).to_owned())
    );
    assert_eq!(
        jobs["rabbitmq"]["static_configs"][0]["targets"][0].as_str(),
        Some("rabbitmq:15692")
    );
    assert!(repo_file("rabbitmq/enabled_plugins").contains("rabbitmq_prometheus"));
    assert_eq!(
        prometheus["rule_files"][0].as_str(),
        Some("/etc/prometheus/alerts.yml")
    );
    let prometheus_volumes: Vec<&str> = compose.service("prometheus")["volumes"]
        .as_vec()
        .expect("volumes")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert!(prometheus_volumes.contains(&"./prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro"));
}

#[test]
fn every_mounted_file_exists_and_every_named_volume_is_declared() {
    let compose = Compose::read();
    let declared = compose.file["volumes"].as_hash();
    for name in compose.names() {
        for volume in compose.service(name)["volumes"]
            .as_vec()
            .into_iter()
            .flatten()
        {
            let volume = volume.as_str().expect("volume");
            let source = volume.split(':').next().expect("source");
            let Some(source) = source.strip_prefix("./") else {
                assert!(
                    declared.is_some_and(|v| v.contains_key(&Yaml::String(source.to_owned()))),
                    "{name} uses the undeclared volume {source}"
                );
                continue;
            };
            let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(source);
            assert!(path.exists(), "{name} mounts missing {source}");
        }
    }
}

#[test]
fn each_image_has_the_binaries_its_services_run_and_production_has_no_sandbox() {
    let compose = Compose::read();
    let target = |name: &str| {
        compose.service(name)["build"]["target"]
            .as_str()
            .map(str::to_owned)
    };
    assert_eq!(target("api").as_deref(), Some("runtime"));
    assert_eq!(target("worker").as_deref(), Some("runtime"));
    assert_eq!(target("wati-sandbox").as_deref(), Some("sandbox"));
    let dockerfile = repo_file("Dockerfile");
    let stages: BTreeMap<&str, &str> = dockerfile
        .split("\nFROM ")
        .skip(1)
        .filter_map(|stage| {
            let name = stage.lines().next()?.split(" AS ").nth(1)?.trim();
            Some((name, stage))
        })
        .collect();
    assert!(
        dockerfile
            .trim_end()
            .rsplit("\nFROM ")
            .next()
            .is_some_and(|last| last.contains("AS runtime")),
        "runtime is the default (last) target"
    );
    for name in ["api", "worker", "wati-sandbox"] {
        assert_eq!(compose.service(name)["command"][0].as_str(), Some(name));
        assert!(
            dockerfile.contains(&format!("target/release/{name}")),
            "the build stage builds {name}"
        );
    }
    assert!(stages["build"].contains("cp target/release/api target/release/worker /out/runtime/"));
    assert!(stages["build"].contains("cp target/release/wati-sandbox /out/sandbox/"));
    assert!(stages["runtime"].contains("/out/runtime/") && !stages["runtime"].contains("sandbox"));
    assert!(stages["sandbox"].contains("/out/sandbox/"));
}

/// `/a/{x}/b` and `/a/{{var}}/b?q=1` both become `/a/{}/b`.
fn normalise(path: &str) -> String {
    let path = path.split('?').next().unwrap_or_default();
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "{}"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn served() -> BTreeSet<(String, String)> {
    otp_api::routes::served_routes()
        .into_iter()
        .map(|(method, path)| (method.to_owned(), normalise(path)))
        .collect()
}

fn documented() -> BTreeSet<(String, String)> {
    let doc: Value = serde_json::from_str(&repo_file("docs/openapi.json")).expect("OpenAPI JSON");
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            routes.insert((method.to_uppercase(), normalise(path)));
        }
    }
    routes
}

#[test]
fn the_openapi_document_lists_every_served_route_and_nothing_else() {
    assert_eq!(documented(), served());
}

#[test]
fn the_postman_collection_covers_every_served_route_and_nothing_else() {
    let collection: Value =
        serde_json::from_str(&repo_file("docs/postman_collection.json")).expect("Postman JSON");
    let requests: BTreeSet<(String, String)> = collection["item"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| {
            let request = &item["request"];
            let raw = request["url"]["raw"].as_str().expect("raw url");
            let path = raw
                .strip_prefix("{{baseUrl}}")
                .expect("relative to {{baseUrl}}");
            (
                request["method"].as_str().expect("method").to_owned(),
                normalise(path),
            )
        })
        .collect();
    assert_eq!(requests, served());
}

#[tokio::test]
async fn every_documented_route_is_answered_by_the_running_api() {
    let mut env = TestEnv::new().await;
    // SMS on: Twilio's callback route exists only then.
    let _api = env.start_sms_api("44", &["--login-page", "true"]).await;
    for (method, path) in documented() {
        // The webhook's parameter is its secret (any other is an unknown route).
        let parameter = if path.starts_with("/api/webhooks/") {
            otp_e2e::WEBHOOK_SECRET
        } else {
            "00000000-0000-0000-0000-000000000000"
        };
        let url = format!("{}{}", env.api_url, path.replace("{}", parameter));
        let request = match method.as_str() {
            "GET" => env.http.get(&url),
            "POST" => env.http.post(&url).json(&serde_json::json!({})),
            other => panic!("unexpected method {other}"),
        };
        let response = request.send().await.expect("api reachable");
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_ne!(status, 405, "{method} {path}");
        assert_ne!(body["code"], "NOT_FOUND", "{method} {path} is not routed");
    }
}

/// Runs Debian's `promtool check rules` on `file`; its output, or a failure naming the
/// package when promtool is missing (this test never skips).
fn promtool_check_rules(file: &std::path::Path) -> String {
    promtool(&["check", "rules"], file)
}

/// Runs `promtool <args> <file>`, which must succeed; its output.
fn promtool(args: &[&str], file: &std::path::Path) -> String {
    let output = std::process::Command::new("promtool")
        .args(args)
        .arg(file)
        .output()
        .unwrap_or_else(|e| {
            panic!("promtool is not installed ({e}): `apt-get install prometheus` (.ci/run does)")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "promtool refused {}:\n{text}",
        file.display()
    );
    text
}

#[test]
fn a_real_prometheus_parses_every_alert_rule_and_every_dashboard_query() {
    let rules = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../prometheus/alerts.yml");
    let checked = promtool_check_rules(&rules);
    let alerts = yaml("prometheus/alerts.yml")["groups"][0]["rules"]
        .as_vec()
        .map_or(0, Vec::len);
    assert!(
        checked.contains(&format!("SUCCESS: {alerts} rules found")),
        "{checked}"
    );

    // Every dashboard query as a recording rule: promtool parses each expression.
    let dashboard: Value = serde_json::from_str(&repo_file("grafana/dashboards/otp-pipeline.json"))
        .expect("dashboard JSON");
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    let mut recording = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (n, expr) in exprs.iter().enumerate() {
        let quoted = serde_json::to_string(expr).expect("a JSON string is a YAML string");
        recording.push_str(&format!(
            "      - record: dashboard:query_{n}\n        expr: {quoted}\n"
        ));
    }
    let file = std::env::temp_dir().join(format!("otp-dashboard-{}.yml", uuid::Uuid::new_v4()));
    std::fs::write(&file, recording).expect("write the recording rules");
    let checked = promtool_check_rules(&file);
    let _ = std::fs::remove_file(&file);
    assert!(
        checked.contains(&format!("SUCCESS: {} rules found", exprs.len())),
        "{checked}"
    );
}

#[test]
fn the_receipt_alerts_fire_when_they_should_and_not_while_receipts_are_off() {
    let tests = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../prometheus/alerts_test.yml");
    let output = promtool(&["test", "rules"], &tests);
    assert!(output.contains("SUCCESS"), "{output}");
}
