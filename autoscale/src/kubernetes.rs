//! The `kubernetes` backend: the executor Deployment's scale, and the
//! pod-deletion-cost of the pod to remove, through the Kubernetes API.

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

use crate::backend::{Backend, ExecutorAddress};
use crate::error::{Error, Result};

/// The annotation a ReplicaSet reads to choose which pod to delete first.
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// Conflicting writers we outwait before giving up on one change.
const CONFLICT_ATTEMPTS: usize = 5;

/// Every call the backend makes, as RBAC sees it: API group, resource, verbs.
/// The Role in `k8s/` must grant exactly these, and tests check both sides.
pub const PERMISSIONS: &[(&str, &str, &[&str])] = &[
    ("apps", "deployments/scale", &["get", "patch"]),
    ("", "pods", &["list", "patch"]),
];

/// Where the executors are.
#[derive(Debug, Clone)]
pub struct KubernetesSettings {
    /// The namespace of the scheduler and executors.
    pub namespace: String,
    /// The executor Deployment.
    pub deployment: String,
    /// Label selector of the executor pods.
    pub pod_selector: String,
    /// Task slots of one executor pod (its `--concurrent-tasks`).
    pub slots_per_executor: usize,
}

/// Scales the executor Deployment and marks the pod to remove.
pub struct KubernetesBackend {
    settings: KubernetesSettings,
    deployments: Api<Deployment>,
    pods: Api<Pod>,
}

impl KubernetesBackend {
    /// A backend on an existing client (the in-cluster one, or a test's).
    pub fn new(client: kube::Client, settings: KubernetesSettings) -> Self {
        Self {
            deployments: Api::namespaced(client.clone(), &settings.namespace),
            pods: Api::namespaced(client, &settings.namespace),
            settings,
        }
    }

    /// Changes the replicas by `delta`, guarded by the scale's resourceVersion so a
    /// concurrent change (a person, a rollout) is re-read instead of overwritten.
    async fn scale_by(&self, delta: i32) -> Result<i32> {
        let name = &self.settings.deployment;
        let action = format!("scale deployment {name} by {delta:+}");
        for _ in 0..CONFLICT_ATTEMPTS {
            let scale = self
                .deployments
                .get_scale(name)
                .await
                .map_err(|source| kubernetes(&action, source))?;
            let current = scale.spec.and_then(|spec| spec.replicas).unwrap_or(0);
            let replicas = (current + delta).max(0);
            let patch = json!({
                "metadata": { "resourceVersion": scale.metadata.resource_version },
                "spec": { "replicas": replicas },
            });
            match self
                .deployments
                .patch_scale(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(replicas),
                Err(kube::Error::Api(status)) if status.is_conflict() => {
                    tracing::info!("{action}: conflict, reading the scale again");
                }
                Err(source) => return Err(kubernetes(&action, source)),
            }
        }
        Err(Error::Conflicts {
            action,
            attempts: CONFLICT_ATTEMPTS,
        })
    }

    /// The executor pod with this IP.
    async fn pod_at(&self, ip: &str) -> Result<String> {
        let selector = &self.settings.pod_selector;
        let pods = self
            .pods
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(|source| kubernetes(&format!("list pods {selector}"), source))?;
        pods.items
            .into_iter()
            .find(|pod| {
                pod.status
                    .as_ref()
                    .and_then(|status| status.pod_ip.as_deref())
                    == Some(ip)
            })
            .and_then(|pod| pod.metadata.name)
            .ok_or_else(|| Error::PodNotFound {
                selector: selector.clone(),
                namespace: self.settings.namespace.clone(),
                ip: ip.to_owned(),
            })
    }
}

fn kubernetes(action: &str, source: kube::Error) -> Error {
    Error::Kubernetes {
        action: action.to_owned(),
        source: Box::new(source),
    }
}

#[async_trait]
impl Backend for KubernetesBackend {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn slots_per_executor(&self) -> usize {
        self.settings.slots_per_executor.max(1)
    }

    async fn add(&self, count: usize) -> Result<()> {
        let replicas = self.scale_by(count as i32).await?;
        tracing::info!(
            "deployment {} scaled to {replicas}",
            self.settings.deployment
        );
        Ok(())
    }

    async fn remove(&self, executor: &ExecutorAddress) -> Result<()> {
        let pod = self.pod_at(&executor.host).await?;
        let patch = json!({
            "metadata": { "annotations": { POD_DELETION_COST: i32::MIN.to_string() } }
        });
        self.pods
            .patch(&pod, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|source| kubernetes(&format!("annotate pod {pod}"), source))?;
        let replicas = self.scale_by(-1).await?;
        tracing::info!(
            "pod {pod} ({executor}) marked for deletion; deployment {} scaled to {replicas}",
            self.settings.deployment
        );
        Ok(())
    }
}

/// No Kubernetes cluster is available to the test suite, so these tests run the
/// backend against an in-process stand-in for the API server: a real HTTP server on
/// 127.0.0.1 that answers like the API server does and records every request.
#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    use serde_json::{Value, json};

    use super::*;

    const SCALE: &str = "/apis/apps/v1/namespaces/strata/deployments/strata-executor/scale";
    const PODS: &str = "/api/v1/namespaces/strata/pods";

    /// One request the backend made.
    #[derive(Debug, Clone, PartialEq)]
    struct Request {
        method: String,
        path: String,
        query: String,
        content_type: String,
        body: Value,
    }

    /// What the stand-in holds and how it misbehaves.
    #[derive(Default)]
    struct ApiServer {
        replicas: i64,
        resource_version: u64,
        /// Answer this many scale patches with 409, changing the version each time.
        conflicts: usize,
        /// Answer requests to this path with this status code.
        fail: Option<(&'static str, u16)>,
        annotations: Vec<(String, Value)>,
        requests: Vec<Request>,
    }

    type Shared = Arc<Mutex<ApiServer>>;

    fn status(code: u16, reason: &str, message: &str) -> (StatusCode, String) {
        let body = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code,
        });
        (StatusCode::from_u16(code).unwrap(), body.to_string())
    }

    fn scale(server: &ApiServer) -> (StatusCode, String) {
        let body = json!({
            "kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": "strata-executor", "namespace": "strata",
                "resourceVersion": server.resource_version.to_string(),
            },
            "spec": { "replicas": server.replicas },
            "status": { "replicas": server.replicas },
        });
        (StatusCode::OK, body.to_string())
    }

    fn pod(name: &str, ip: &str) -> Value {
        json!({
            "metadata": { "name": name, "namespace": "strata",
                          "labels": { "app.kubernetes.io/component": "executor" } },
            "status": { "podIP": ip },
        })
    }

    async fn answer(
        State(server): State<Shared>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> (StatusCode, String) {
        let mut server = server.lock().unwrap();
        let path = uri.path().to_owned();
        server.requests.push(Request {
            method: method.to_string(),
            path: path.clone(),
            query: uri.query().unwrap_or_default().to_owned(),
            content_type: headers
                .get("content-type")
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        });
        if let Some((failing, code)) = server.fail
            && path.starts_with(failing)
        {
            return status(code, "Forbidden", "the stand-in refuses this request");
        }
        match (method, path.as_str()) {
            (Method::GET, SCALE) => scale(&server),
            (Method::PATCH, SCALE) => {
                let request = server.requests.last().unwrap().body.clone();
                let version = request["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or("");
                if server.conflicts > 0 {
                    server.conflicts -= 1;
                    server.resource_version += 1;
                    return status(409, "Conflict", "the object has been modified");
                }
                if version != server.resource_version.to_string() {
                    return status(409, "Conflict", "stale resourceVersion");
                }
                server.replicas = request["spec"]["replicas"].as_i64().unwrap();
                server.resource_version += 1;
                scale(&server)
            }
            (Method::GET, PODS) => {
                let list = json!({
                    "kind": "PodList", "apiVersion": "v1", "metadata": {},
                    "items": [pod("strata-executor-a", "10.0.0.11"), pod("strata-executor-b", "10.0.0.12")],
                });
                (StatusCode::OK, list.to_string())
            }
            (Method::PATCH, pod_path) if pod_path.starts_with(PODS) => {
                let name = pod_path.rsplit('/').next().unwrap().to_owned();
                let annotations =
                    server.requests.last().unwrap().body["metadata"]["annotations"].clone();
                server.annotations.push((name.clone(), annotations));
                (StatusCode::OK, pod(&name, "10.0.0.12").to_string())
            }
            _ => status(404, "NotFound", "no such path in the stand-in"),
        }
    }

    async fn stand_in(server: ApiServer) -> (KubernetesBackend, Shared) {
        let shared = Arc::new(Mutex::new(server));
        let app = Router::new()
            .fallback(answer)
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let config = kube::Config::new(format!("http://{address}").parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let backend = KubernetesBackend::new(
            client,
            KubernetesSettings {
                namespace: "strata".into(),
                deployment: "strata-executor".into(),
                pod_selector: "app.kubernetes.io/component=executor".into(),
                slots_per_executor: 2,
            },
        );
        (backend, shared)
    }

    fn with_replicas(replicas: i64) -> ApiServer {
        ApiServer {
            replicas,
            resource_version: 7,
            ..ApiServer::default()
        }
    }

    fn requests(shared: &Shared) -> Vec<(String, String)> {
        let server = shared.lock().unwrap();
        server
            .requests
            .iter()
            .map(|r| (r.method.clone(), r.path.clone()))
            .collect()
    }

    fn get(path: &str) -> (String, String) {
        ("GET".into(), path.into())
    }

    fn patch(path: &str) -> (String, String) {
        ("PATCH".into(), path.into())
    }

    fn executor_at(host: &str) -> ExecutorAddress {
        ExecutorAddress {
            id: "e-1".into(),
            host: host.into(),
            port: 50052,
        }
    }

    #[tokio::test]
    async fn adding_reads_the_scale_then_patches_it_guarded_by_its_version() {
        let (backend, shared) = stand_in(with_replicas(2)).await;
        backend.add(3).await.unwrap();
        assert_eq!(requests(&shared), [get(SCALE), patch(SCALE)]);
        let server = shared.lock().unwrap();
        let sent = &server.requests[1];
        assert_eq!(sent.content_type, "application/merge-patch+json");
        assert_eq!(
            sent.body,
            json!({ "metadata": { "resourceVersion": "7" }, "spec": { "replicas": 5 } })
        );
        assert_eq!(server.replicas, 5);
    }

    #[tokio::test]
    async fn removing_marks_the_pod_cheapest_to_delete_before_lowering_replicas() {
        let (backend, shared) = stand_in(with_replicas(3)).await;
        backend.remove(&executor_at("10.0.0.12")).await.unwrap();
        let pod_path = format!("{PODS}/strata-executor-b");
        assert_eq!(
            requests(&shared),
            [get(PODS), patch(&pod_path), get(SCALE), patch(SCALE)]
        );
        let server = shared.lock().unwrap();
        assert_eq!(
            server.requests[0].query,
            "&labelSelector=app.kubernetes.io%2Fcomponent%3Dexecutor"
        );
        assert_eq!(
            server.requests[1].content_type,
            "application/merge-patch+json"
        );
        assert_eq!(
            server.annotations,
            [(
                "strata-executor-b".to_owned(),
                json!({ POD_DELETION_COST: "-2147483648" })
            )]
        );
        assert_eq!(
            server.requests[3].body,
            json!({ "metadata": { "resourceVersion": "7" }, "spec": { "replicas": 2 } })
        );
        assert_eq!(server.replicas, 2);
    }

    #[tokio::test]
    async fn a_conflict_is_met_by_reading_the_scale_again() {
        let mut server = with_replicas(1);
        server.conflicts = 2;
        let (backend, shared) = stand_in(server).await;
        backend.add(1).await.unwrap();
        assert_eq!(
            requests(&shared),
            [
                get(SCALE),
                patch(SCALE),
                get(SCALE),
                patch(SCALE),
                get(SCALE),
                patch(SCALE)
            ]
        );
        let server = shared.lock().unwrap();
        // Each retry carries the version it just read, and the replicas are applied once.
        let versions: Vec<&str> = server
            .requests
            .iter()
            .filter(|r| r.method == "PATCH")
            .map(|r| r.body["metadata"]["resourceVersion"].as_str().unwrap())
            .collect();
        assert_eq!(versions, ["7", "8", "9"]);
        assert_eq!(server.replicas, 2);
    }

    #[tokio::test]
    async fn endless_conflicts_give_up_with_a_clear_error() {
        let mut server = with_replicas(1);
        server.conflicts = usize::MAX;
        let (backend, shared) = stand_in(server).await;
        let error = backend.add(1).await.unwrap_err().to_string();
        assert_eq!(
            error,
            "Kubernetes API: scale deployment strata-executor by +1: the object kept changing \
             under us (5 conflicts in a row)"
        );
        assert_eq!(requests(&shared).len(), 2 * CONFLICT_ATTEMPTS);
        assert_eq!(shared.lock().unwrap().replicas, 1);
    }

    #[tokio::test]
    async fn an_api_error_stops_the_removal_before_replicas_change() {
        let mut server = with_replicas(3);
        server.fail = Some((PODS, 403));
        let (backend, shared) = stand_in(server).await;
        let error = backend
            .remove(&executor_at("10.0.0.12"))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("Kubernetes API: list pods app.kubernetes.io/component=executor:"),
            "{error}"
        );
        assert!(
            error.contains("the stand-in refuses this request"),
            "{error}"
        );
        assert_eq!(requests(&shared), [get(PODS)]);
        assert_eq!(shared.lock().unwrap().replicas, 3);
    }

    #[tokio::test]
    async fn a_server_error_on_the_scale_is_reported_not_retried() {
        let mut server = with_replicas(3);
        server.fail = Some((SCALE, 500));
        let (backend, shared) = stand_in(server).await;
        let error = backend.add(1).await.unwrap_err().to_string();
        assert!(
            error.starts_with("Kubernetes API: scale deployment strata-executor by +1:"),
            "{error}"
        );
        assert_eq!(requests(&shared), [get(SCALE)]);
    }

    #[tokio::test]
    async fn an_executor_without_a_pod_is_not_removed() {
        let (backend, shared) = stand_in(with_replicas(3)).await;
        let error = backend
            .remove(&executor_at("10.9.9.9"))
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "no pod matching app.kubernetes.io/component=executor in namespace strata has IP 10.9.9.9"
        );
        let server = shared.lock().unwrap();
        assert!(server.annotations.is_empty());
        assert_eq!(server.replicas, 3);
    }

    #[tokio::test]
    async fn every_call_is_one_the_role_grants_and_every_grant_is_used() {
        let (backend, shared) = stand_in(with_replicas(1)).await;
        backend.add(2).await.unwrap();
        backend.remove(&executor_at("10.0.0.11")).await.unwrap();
        let mut used: Vec<(&str, &str, &str)> = shared
            .lock()
            .unwrap()
            .requests
            .iter()
            .map(|request| {
                let verb = match (request.method.as_str(), request.path.as_str()) {
                    ("GET", PODS) => "list",
                    ("GET", _) => "get",
                    ("PATCH", _) => "patch",
                    (method, path) => panic!("unexpected call {method} {path}"),
                };
                let (group, resource) = match request.path.as_str() {
                    SCALE => ("apps", "deployments/scale"),
                    path if path.starts_with(PODS) => ("", "pods"),
                    path => panic!("call outside the namespace's executors: {path}"),
                };
                (group, resource, verb)
            })
            .collect();
        used.sort();
        used.dedup();
        let mut granted: Vec<(&str, &str, &str)> = PERMISSIONS
            .iter()
            .flat_map(|(group, resource, verbs)| {
                verbs.iter().map(move |verb| (*group, *resource, *verb))
            })
            .collect();
        granted.sort();
        assert_eq!(used, granted);
    }
}
