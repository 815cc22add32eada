//! The Kubernetes manifests, rendered by kustomize: every object parses into its
//! `k8s-openapi` type with nothing left over, the images, ports, probes and settings
//! agree with the CLI's flags, and the RBAC grants exactly what the autoscaler calls.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, PersistentVolumeClaim, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyIngressRule};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::de::DeserializeOwned;
use serde_json::Value;
use strata_autoscale::kubernetes::PERMISSIONS;

use crate::support::{stdout, strata};

/// One overlay, rendered and typed.
struct Rendered {
    namespace: String,
    objects: Vec<Value>,
}

impl Rendered {
    fn render(overlay: &str) -> Self {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../k8s/overlays")
            .join(overlay);
        let output = Command::new("kubectl")
            .args(["kustomize", dir.to_str().unwrap()])
            .output()
            .expect("kubectl (with kustomize 4 or later) is installed; scripts/test installs it");
        assert!(
            output.status.success(),
            "kubectl kustomize {overlay}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8(output.stdout).unwrap();
        let objects: Vec<Value> = serde_saphyr::from_multiple(&text).expect("valid YAML");
        let namespace = objects
            .iter()
            .find(|o| o["kind"] == "Deployment")
            .map(|o| o["metadata"]["namespace"].as_str().unwrap().to_owned())
            .unwrap();
        Self { namespace, objects }
    }

    /// Every object of a kind, parsed into its type, which must keep every field.
    fn all<T: DeserializeOwned + serde::Serialize>(&self, kind: &str) -> Vec<T> {
        self.objects
            .iter()
            .filter(|o| o["kind"] == kind)
            .map(|o| {
                let typed: T = serde_json::from_value(o.clone())
                    .unwrap_or_else(|e| panic!("{kind} {}: {e}", o["metadata"]["name"]));
                let back = serde_json::to_value(&typed).unwrap();
                assert_eq!(&back, o, "{kind} has fields its type does not know");
                typed
            })
            .collect()
    }

    fn one<T: DeserializeOwned + serde::Serialize>(&self, kind: &str, name: &str) -> T {
        let object = self
            .objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"));
        serde_json::from_value(object.clone()).unwrap()
    }

    fn deployment(&self, name: &str) -> (Deployment, Container) {
        let deployment: Deployment = self.one("Deployment", name);
        let container = deployment.spec.clone().template.spec.unwrap().containers[0].clone();
        (deployment, container)
    }

    /// A generated ConfigMap's data (kustomize adds a hash to its name).
    fn config_map(&self, name: &str) -> BTreeMap<String, String> {
        let maps: Vec<ConfigMap> = self.all("ConfigMap");
        let prefix = format!("{name}-");
        let found: Vec<_> = maps
            .iter()
            .filter(|map| map.metadata.name.as_ref().unwrap().starts_with(&prefix))
            .collect();
        assert_eq!(found.len(), 1, "{name}");
        found[0].data.clone().unwrap_or_default()
    }

    /// The settings ConfigMap.
    fn config(&self) -> BTreeMap<String, String> {
        self.config_map("strata-config")
    }
}

/// The value after `flag` in a container's args.
fn flag<'a>(container: &'a Container, flag: &str) -> &'a str {
    let args = container.args.as_ref().unwrap();
    let at = args
        .iter()
        .position(|arg| arg == flag)
        .unwrap_or_else(|| panic!("{} has no {flag}: {args:?}", container.name));
    &args[at + 1]
}

/// The container port with this name.
fn port(container: &Container, name: &str) -> i32 {
    container
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .find(|p| p.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("{} has no port {name}", container.name))
        .container_port
}

/// Readiness on `/readyz` and liveness on `/healthz`, both on the named port.
fn assert_probes(container: &Container, port: &str) {
    for (probe, path) in [
        (container.readiness_probe.as_ref(), "/readyz"),
        (container.liveness_probe.as_ref(), "/healthz"),
    ] {
        let get = probe.unwrap().http_get.as_ref().unwrap();
        assert_eq!(get.path.as_deref(), Some(path), "{}", container.name);
        assert_eq!(
            get.port,
            IntOrString::String(port.into()),
            "{}",
            container.name
        );
    }
}

/// The pod field an environment variable of the container is taken from.
fn env_field<'a>(container: &'a Container, name: &str) -> &'a str {
    let var = container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("{} has no {name}", container.name));
    let field = var
        .value_from
        .as_ref()
        .and_then(|from| from.field_ref.as_ref());
    &field
        .unwrap_or_else(|| panic!("{name} is not from a pod field"))
        .field_path
}

fn help(command: &str) -> String {
    let output = strata(&[command, "--help"]);
    assert!(output.status.success());
    stdout(&output)
}

/// The kinds every overlay must have, with how many of each; an overlay adds where its
/// warehouse is (a volume claim, or a store's credentials), and nothing else.
const KINDS: [(&str, usize); 9] = [
    ("ConfigMap", 2),
    ("Deployment", 2),
    ("NetworkPolicy", 2),
    ("PodDisruptionBudget", 1),
    ("Role", 1),
    ("RoleBinding", 1),
    ("Secret", 2),
    ("Service", 2),
    ("ServiceAccount", 2),
];

fn check_overlay(overlay: &str, warehouse_kind: &str) -> Rendered {
    let rendered = Rendered::render(overlay);
    // Every object types cleanly, and nothing else is in the overlay.
    let _: Vec<ConfigMap> = rendered.all("ConfigMap");
    let _: Vec<Deployment> = rendered.all("Deployment");
    let _: Vec<NetworkPolicy> = rendered.all("NetworkPolicy");
    let _: Vec<PersistentVolumeClaim> = rendered.all("PersistentVolumeClaim");
    let _: Vec<Secret> = rendered.all("Secret");
    let _: Vec<PodDisruptionBudget> = rendered.all("PodDisruptionBudget");
    let _: Vec<Role> = rendered.all("Role");
    let _: Vec<RoleBinding> = rendered.all("RoleBinding");
    let _: Vec<Service> = rendered.all("Service");
    let _: Vec<ServiceAccount> = rendered.all("ServiceAccount");
    let mut expected_kinds: BTreeMap<&str, usize> = KINDS.into_iter().collect();
    *expected_kinds.entry(warehouse_kind).or_default() += 1;
    for (kind, count) in expected_kinds {
        let found = rendered
            .objects
            .iter()
            .filter(|o| o["kind"] == kind)
            .count();
        assert_eq!(found, count, "{overlay}: {kind}");
    }
    let expected: usize = KINDS.iter().map(|(_, count)| count).sum::<usize>() + 1;
    assert_eq!(
        rendered.objects.len(),
        expected,
        "{overlay}: objects of other kinds"
    );
    for object in &rendered.objects {
        assert_eq!(
            object["metadata"]["namespace"], rendered.namespace,
            "{overlay}: {} {} is outside the namespace",
            object["kind"], object["metadata"]["name"]
        );
    }

    let (scheduler_deployment, scheduler) = rendered.deployment("strata-scheduler");
    let (executor_deployment, executor) = rendered.deployment("strata-executor");
    let config = rendered.config();

    // One image for both, since a cluster refuses a peer of another version; the
    // preStop hook runs the binary where the Dockerfile puts it.
    assert_eq!(scheduler.image, executor.image, "{overlay}");
    let dockerfile =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Dockerfile"))
            .unwrap();
    assert!(dockerfile.contains("ENTRYPOINT [\"/usr/local/bin/strata\"]"));
    assert!(dockerfile.contains("COPY --from=build /strata /usr/local/bin/strata"));
    assert_eq!(scheduler.command, None);
    assert_eq!(scheduler.args.as_ref().unwrap()[0], "scheduler");
    assert_eq!(executor.args.as_ref().unwrap()[0], "executor");

    // Every flag the manifests pass exists, and every setting is an environment
    // variable the CLI reads.
    let scheduler_help = help("scheduler");
    let executor_help = help("executor");
    let drain_help = help("drain");
    for (container, help) in [(&scheduler, &scheduler_help), (&executor, &executor_help)] {
        for arg in container
            .args
            .as_ref()
            .unwrap()
            .iter()
            .filter(|a| a.starts_with("--"))
        {
            assert!(
                help.contains(&format!("{arg} ")),
                "{overlay}: {arg} is not a flag"
            );
        }
    }
    for key in config.keys() {
        let read = [&scheduler_help, &executor_help, &drain_help]
            .iter()
            .any(|help| help.contains(&format!("[env: {key}=")));
        // A store's settings are read by its client, as the warehouse's help says.
        let store_setting = key.starts_with("AWS_") && scheduler_help.contains("AWS_*");
        assert!(
            read || store_setting || key == "STRATA_LOG",
            "{overlay}: nothing reads {key}"
        );
    }

    // The declared schedules are mounted where STRATA_SCHEDULES says, they parse, and
    // each pipeline they name is one the image carries.
    let schedules = rendered.config_map("strata-schedules");
    let file = schedules.get("schedules.toml").expect("schedules.toml");
    let env = scheduler.env.clone().unwrap();
    let path = env
        .iter()
        .find(|var| var.name == "STRATA_SCHEDULES")
        .and_then(|var| var.value.clone())
        .expect("STRATA_SCHEDULES");
    let mounts = scheduler.volume_mounts.clone().unwrap();
    let mount = mounts
        .iter()
        .find(|mount| mount.name == "schedules")
        .expect("the schedules volume is mounted");
    assert_eq!(
        path,
        format!("{}/schedules.toml", mount.mount_path),
        "{overlay}"
    );
    assert!(scheduler_help.contains("[env: STRATA_SCHEDULES="));
    let declared: toml::Value = toml::from_str(file).unwrap();
    for schedule in declared
        .get("schedule")
        .and_then(|s| s.as_array())
        .into_iter()
        .flatten()
    {
        for pipeline in schedule["pipeline"].as_array().unwrap() {
            let pipeline = pipeline.as_str().unwrap();
            let carried = pipeline
                .strip_prefix("/opt/strata/pipelines/")
                .unwrap_or_else(|| panic!("{overlay}: {pipeline} is not in the image"));
            assert!(
                dockerfile.contains(&format!("COPY examples/{carried} {pipeline}")),
                "{overlay}: the image does not carry {pipeline}"
            );
        }
    }

    // Scheduler: its ports are what its flags say, and its probes use the metrics port.
    let listen = flag(&scheduler, "--listen");
    assert_eq!(
        listen.rsplit_once(':').unwrap().1,
        port(&scheduler, "grpc").to_string()
    );
    assert_eq!(
        flag(&scheduler, "--flight-sql-port"),
        port(&scheduler, "flight-sql").to_string()
    );
    assert_eq!(
        flag(&scheduler, "--metrics-port"),
        port(&scheduler, "metrics").to_string()
    );
    assert_probes(&scheduler, "metrics");
    assert_eq!(
        env_field(&scheduler, "STRATA_ADVERTISE_HOST"),
        "status.podIP"
    );
    assert!(scheduler_help.contains("[env: STRATA_ADVERTISE_HOST="));
    let (service_host, service_port) = config["STRATA_SCHEDULER"].rsplit_once(':').unwrap();
    let service: Service = rendered.one("Service", service_host);
    let ports = service.spec.unwrap().ports.unwrap();
    let grpc = ports
        .iter()
        .find(|p| p.port.to_string() == service_port)
        .unwrap();
    assert_eq!(grpc.target_port, Some(IntOrString::String("grpc".into())));
    let flight: Service = rendered.one("Service", "strata-flight-sql");
    let people = flight.spec.unwrap().ports.unwrap();
    assert_eq!(
        people[0].target_port,
        Some(IntOrString::String("flight-sql".into()))
    );
    assert_eq!(
        flag(&scheduler, "--console-port"),
        port(&scheduler, "console").to_string()
    );
    assert!(
        people
            .iter()
            .any(|p| p.target_port == Some(IntOrString::String("console".into()))),
        "{overlay}: no Service for the console"
    );
    assert_eq!(
        scheduler_deployment
            .spec
            .template
            .spec
            .unwrap()
            .service_account_name
            .as_deref(),
        Some("strata-scheduler")
    );

    // Executors: ports and probes match their flags; the drain fits in the grace period.
    assert_eq!(
        flag(&executor, "--flight-port"),
        port(&executor, "flight").to_string()
    );
    assert_eq!(
        flag(&executor, "--grpc-port"),
        port(&executor, "grpc").to_string()
    );
    assert_eq!(
        flag(&executor, "--health-port"),
        port(&executor, "health").to_string()
    );
    assert_probes(&executor, "health");
    let resources = executor.resources.as_ref().unwrap();
    assert!(resources.requests.as_ref().unwrap().contains_key("cpu"));
    assert!(resources.limits.as_ref().unwrap().contains_key("memory"));
    let pre_stop = executor
        .lifecycle
        .as_ref()
        .unwrap()
        .pre_stop
        .as_ref()
        .unwrap();
    let command = pre_stop.exec.as_ref().unwrap().command.as_ref().unwrap();
    assert_eq!(&command[..2], ["/usr/local/bin/strata", "drain"]);
    let drain_timeout: i64 = command[command.iter().position(|a| a == "--timeout").unwrap() + 1]
        .parse()
        .unwrap();
    let pod = executor_deployment.spec.template.spec.clone().unwrap();
    let grace = pod.termination_grace_period_seconds.unwrap();
    assert!(
        drain_timeout < grace && grace - drain_timeout <= 600,
        "{overlay}: drain {drain_timeout} s, grace {grace} s"
    );
    assert_eq!(env_field(&executor, "STRATA_EXECUTOR_HOST"), "status.podIP");
    let slots = config
        .get("STRATA_EXECUTOR_SLOTS")
        .map_or("2", String::as_str);
    assert_eq!(flag(&executor, "--concurrent-tasks"), slots, "{overlay}");

    // The autoscaler's defaults name this Deployment and select its pods.
    assert!(scheduler_help.contains("[default: strata-executor]"));
    let labels = pod_labels(&executor_deployment);
    let selector = "app.kubernetes.io/name=strata,app.kubernetes.io/component=executor";
    assert!(scheduler_help.contains(&format!("[default: {selector}]")));
    for pair in selector.split(',') {
        let (key, value) = pair.split_once('=').unwrap();
        assert_eq!(
            labels.get(key).map(String::as_str),
            Some(value),
            "{overlay}: {key}"
        );
    }

    // The PDB and the NetworkPolicy cover the executor pods; the Flight and task
    // ports take traffic from Strata's pods only.
    let pdb: PodDisruptionBudget = rendered.one("PodDisruptionBudget", "strata-executor");
    let pdb_labels = pdb.spec.unwrap().selector.unwrap().match_labels.unwrap();
    assert!(pdb_labels.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let policy: NetworkPolicy = rendered.one("NetworkPolicy", "strata-executor");
    let policy = policy.spec.unwrap();
    let selected = policy.pod_selector.unwrap().match_labels.unwrap();
    assert!(selected.iter().all(|(k, v)| labels.get(k) == Some(v)));
    for rule in policy.ingress.unwrap() {
        let ports = port_names(&rule);
        let open_to_all = rule.from.is_none();
        if ports.contains("flight") || ports.contains("grpc") {
            assert!(!open_to_all, "{overlay}: executor ports open to every pod");
            for peer in rule.from.unwrap() {
                let from = peer.pod_selector.unwrap().match_labels.unwrap();
                assert_eq!(
                    from.get("app.kubernetes.io/name").map(String::as_str),
                    Some("strata")
                );
                assert!(peer.namespace_selector.is_none() && peer.ip_block.is_none());
            }
        } else {
            assert_eq!(ports, BTreeSet::from(["health".to_owned()]), "{overlay}");
        }
    }
    check_access(&rendered, overlay, &scheduler, &executor, &scheduler_help);
    check_rbac(&rendered);
    rendered
}

/// The scheduler's token comes from a Secret to every pod, and its port is reachable
/// only from Strata's pods and labelled clients.
fn check_access(
    rendered: &Rendered,
    overlay: &str,
    scheduler: &Container,
    executor: &Container,
    scheduler_help: &str,
) {
    let secret: Secret = rendered.one("Secret", "strata-token");
    let keys = secret.string_data.unwrap();
    // The scheduler's port, and Flight SQL's and the console's logins.
    for key in ["STRATA_TOKEN", "STRATA_FLIGHT_USERS"] {
        assert!(keys.contains_key(key), "{overlay}: the Secret has no {key}");
        assert!(scheduler_help.contains(&format!("[env: {key}")), "{key}");
    }
    assert!(
        scheduler_help.contains("[env: STRATA_TOKEN"),
        "{scheduler_help}"
    );
    assert!(help("executor").contains("[env: STRATA_TOKEN"));
    assert!(help("drain").contains("[env: STRATA_TOKEN"));
    for container in [scheduler, executor] {
        let from_secret = container.env_from.as_ref().unwrap().iter().any(|source| {
            source
                .secret_ref
                .as_ref()
                .map(|secret| secret.name.as_str())
                == Some("strata-token")
        });
        assert!(from_secret, "{overlay}: {} has no token", container.name);
    }
    check_cluster_identity(rendered, overlay, &[scheduler, executor]);
    let policy: NetworkPolicy = rendered.one("NetworkPolicy", "strata-scheduler");
    let spec = policy.spec.unwrap();
    let selected = spec.pod_selector.unwrap().match_labels.unwrap();
    assert_eq!(
        selected
            .get("app.kubernetes.io/component")
            .map(String::as_str),
        Some("scheduler")
    );
    let mut grpc_rules = 0;
    for rule in spec.ingress.unwrap() {
        let ports = port_names(&rule);
        for port in &ports {
            assert!(
                scheduler
                    .ports
                    .as_ref()
                    .unwrap()
                    .iter()
                    .any(|p| p.name.as_deref() == Some(port.as_str())),
                "{overlay}: the policy names a port {port} the scheduler does not have"
            );
        }
        if ports.contains("grpc") {
            grpc_rules += 1;
            let peers = rule.from.expect("the scheduler's port open to every pod");
            for peer in peers {
                assert!(peer.namespace_selector.is_none() && peer.ip_block.is_none());
                let from = peer.pod_selector.unwrap().match_labels.unwrap();
                assert!(
                    from.get("app.kubernetes.io/name").map(String::as_str) == Some("strata")
                        || from.get("strata.io/client").map(String::as_str) == Some("true"),
                    "{overlay}: {from:?}"
                );
            }
        }
    }
    assert_eq!(grpc_rules, 1, "{overlay}");
}

/// Every pod mounts the cluster's identity where `STRATA_CLUSTER_TLS` says; the base
/// leaves it empty (every pod refuses to start), and an overlay that fills it fills it
/// with an identity the executors accept.
fn check_cluster_identity(rendered: &Rendered, overlay: &str, containers: &[&Container]) {
    let config = rendered.config();
    let path = &config["STRATA_CLUSTER_TLS"];
    assert!(help("executor").contains("[env: STRATA_CLUSTER_TLS"));
    assert!(help("scheduler").contains("[env: STRATA_CLUSTER_TLS"));
    for name in ["strata-scheduler", "strata-executor"] {
        let (deployment, container) = rendered.deployment(name);
        assert!(containers.iter().any(|c| c.name == container.name));
        let mount = container
            .volume_mounts
            .unwrap()
            .into_iter()
            .find(|mount| &mount.mount_path == path)
            .unwrap_or_else(|| panic!("{overlay}: {name} does not mount {path}"));
        let volumes = deployment.spec.template.spec.unwrap().volumes.unwrap();
        let volume = volumes
            .iter()
            .find(|volume| volume.name == mount.name)
            .unwrap();
        let secret = volume
            .secret
            .as_ref()
            .and_then(|secret| secret.secret_name.as_deref());
        assert_eq!(secret, Some("strata-cluster-tls"), "{overlay}: {name}");
    }
    let secret: Secret = rendered.one("Secret", "strata-cluster-tls");
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let files = secret.string_data.unwrap();
    let dir = crate::support::workdir(&format!("k8s-{overlay}-cluster-tls"));
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["ca.crt", "tls.crt", "tls.key"] {
        std::fs::write(dir.join(name), &files[name]).unwrap();
    }
    let loaded = strata_engine::cluster_tls::ClusterTls::from_dir(&dir);
    assert_eq!(
        loaded.is_ok(),
        !files["tls.crt"].is_empty(),
        "{overlay}: {loaded:?}"
    );
}

/// The ports a NetworkPolicy rule opens, by name or number.
fn port_names(rule: &NetworkPolicyIngressRule) -> BTreeSet<String> {
    rule.ports
        .iter()
        .flatten()
        .map(|p| match p.port.clone().unwrap() {
            IntOrString::String(name) => name,
            IntOrString::Int(number) => number.to_string(),
        })
        .collect()
}

fn pod_labels(deployment: &Deployment) -> BTreeMap<String, String> {
    let template = deployment.spec.template.metadata.clone().unwrap();
    template.labels.unwrap()
}

/// The Role grants exactly what the Kubernetes backend calls, in its own namespace,
/// to the scheduler's service account only.
fn check_rbac(rendered: &Rendered) {
    for cluster_wide in ["ClusterRole", "ClusterRoleBinding"] {
        assert!(rendered.objects.iter().all(|o| o["kind"] != cluster_wide));
    }
    let role: Role = rendered.one("Role", "strata-autoscaler");
    let mut granted: Vec<(String, String, String)> = Vec::new();
    for rule in role.rules.unwrap() {
        assert!(rule.non_resource_urls.is_none());
        for group in rule.api_groups.unwrap() {
            for resource in rule.resources.clone().unwrap() {
                if resource == "deployments/scale" {
                    assert_eq!(
                        rule.resource_names,
                        Some(vec!["strata-executor".to_owned()])
                    );
                }
                for verb in &rule.verbs {
                    granted.push((group.clone(), resource.clone(), verb.clone()));
                }
            }
        }
    }
    let mut needed: Vec<(String, String, String)> = PERMISSIONS
        .iter()
        .flat_map(|(group, resource, verbs)| {
            verbs
                .iter()
                .map(|verb| (group.to_string(), resource.to_string(), verb.to_string()))
        })
        .collect();
    granted.sort();
    needed.sort();
    assert_eq!(granted, needed);
    let binding: RoleBinding = rendered.one("RoleBinding", "strata-autoscaler");
    assert_eq!(binding.role_ref.kind, "Role");
    assert_eq!(binding.role_ref.name, "strata-autoscaler");
    let subjects = binding.subjects.unwrap();
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0].kind, "ServiceAccount");
    assert_eq!(subjects[0].name, "strata-scheduler");
    assert_eq!(
        subjects[0].namespace.as_deref(),
        Some(rendered.namespace.as_str())
    );
    let executors: ServiceAccount = rendered.one("ServiceAccount", "strata-executor");
    assert_eq!(executors.automount_service_account_token, Some(false));
}

#[test]
fn the_dev_overlay_runs_one_executor_without_autoscaling() {
    let dev = check_overlay("dev", "PersistentVolumeClaim");
    assert_eq!(dev.config()["STRATA_WAREHOUSE"], "/warehouse");
    for name in ["strata-scheduler", "strata-executor"] {
        let (_, container) = dev.deployment(name);
        let mounts = container.volume_mounts.unwrap();
        assert!(
            mounts
                .iter()
                .any(|mount| mount.name == "warehouse" && mount.mount_path == "/warehouse"),
            "{name} mounts the warehouse"
        );
    }
    assert_eq!(dev.namespace, "strata-dev");
    let config = dev.config();
    assert!(!config.contains_key("STRATA_AUTOSCALE"), "{config:?}");
    let (executors, container) = dev.deployment("strata-executor");
    assert_eq!(executors.spec.replicas, Some(1));
    assert_eq!(container.image.as_deref(), Some("strata:dev"));

    // The scheduler starts with the dev Secret's logins on a pod's address (0.0.0.0),
    // serving Flight SQL and the console; with the base's empty ones it refuses.
    let secret: Secret = dev.one("Secret", "strata-token");
    let logins = secret.string_data.unwrap();
    let warehouse = crate::support::workdir("k8s-dev-warehouse");
    std::fs::create_dir_all(&warehouse).unwrap();
    let start = |users: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args([
                "scheduler",
                "--listen",
                "0.0.0.0:0",
                "--flight-sql-port",
                "0",
            ])
            .args(["--console-port", "0"])
            .env("STRATA_WAREHOUSE", &warehouse)
            .env("STRATA_TOKEN", &logins["STRATA_TOKEN"])
            .env("STRATA_FLIGHT_USERS", users)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut said = String::new();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        while std::io::BufRead::read_line(&mut out, &mut said).unwrap_or(0) > 0
            && !said.contains("serving Flight SQL")
        {}
        let _ = child.kill();
        let output = child.wait_with_output().unwrap();
        format!("{said}{}", String::from_utf8_lossy(&output.stderr))
    };
    let served = start(&logins["STRATA_FLIGHT_USERS"]);
    assert!(
        served.contains("serving the console on http://0.0.0.0:"),
        "{served}"
    );
    assert!(
        served.contains("serving Flight SQL on grpc://0.0.0.0:"),
        "{served}"
    );
    let refused = start("");
    assert!(refused.contains("refusing to serve"), "{refused}");
}

#[test]
fn the_prod_overlay_autoscales_executors_between_its_bounds() {
    let prod = check_overlay("prod", "Secret");
    assert_eq!(prod.namespace, "strata");
    let config = prod.config();
    assert_eq!(config["STRATA_AUTOSCALE"], "kubernetes");
    let min: i32 = config["STRATA_MIN_EXECUTORS"].parse().unwrap();
    let max: i32 = config["STRATA_MAX_EXECUTORS"].parse().unwrap();
    let (executors, container) = prod.deployment("strata-executor");
    let replicas = executors.spec.replicas.unwrap();
    assert!(
        min <= replicas && replicas <= max,
        "{min} <= {replicas} <= {max}"
    );
    assert_eq!(
        container.image.as_deref(),
        Some("registry.example.com/strata:0.1.0")
    );
}

#[test]
fn the_prod_overlay_keeps_the_warehouse_in_s3_with_credentials_from_a_secret() {
    let prod = Rendered::render("prod");
    let config = prod.config();
    let warehouse = &config["STRATA_WAREHOUSE"];
    assert!(warehouse.starts_with("s3://"), "{warehouse}");
    // The CLI takes the URL: `strata check` opens the warehouse it names.
    assert!(help("run").contains("s3://bucket/prefix"));
    let secret: Secret = prod.one("Secret", "strata-store-credentials");
    let keys: BTreeSet<String> = secret.string_data.unwrap().into_keys().collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "AWS_ACCESS_KEY_ID".to_owned(),
            "AWS_SECRET_ACCESS_KEY".to_owned()
        ])
    );
    for name in ["strata-scheduler", "strata-executor"] {
        let (deployment, container) = prod.deployment(name);
        let from_secret = container.env_from.unwrap().iter().any(|source| {
            source
                .secret_ref
                .as_ref()
                .map(|secret| secret.name.as_str())
                == Some("strata-store-credentials")
        });
        assert!(from_secret, "{name} reads the store's credentials");
        let volumes = deployment.spec.template.spec.unwrap().volumes.unwrap();
        assert!(
            volumes
                .iter()
                .all(|volume| volume.persistent_volume_claim.is_none()),
            "{name}: no shared volume in prod"
        );
    }
}
