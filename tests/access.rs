//! A scheduler that takes tokens: every call on its port presents one, from the CLI,
//! the executors and a query client alike; a read-only token watches runs but cannot
//! submit; a missing or wrong token is refused with a sentence saying what to do.

use std::process::Command;
use std::sync::Arc;

use datafusion::physical_plan::empty::EmptyExec;
use strata_engine::Engine;
use strata_engine::scheduler_client::Credentials;

use crate::cluster::{Cluster, assert_same_tables, embedded_and_copy, free_port};
use crate::support::{example, stderr, stdout, strata, workdir};

const FULL: &str = "full-token-for-the-tests-0123456789";
const READ_ONLY: &str = "read-only-token-for-the-tests-0123";

fn with_token(token: Option<&str>) -> Credentials {
    Credentials {
        token: token.map(str::to_owned),
        ..Credentials::default()
    }
}

/// Runs `strata` with `STRATA_TOKEN` set to `token`, or unset.
fn strata_with(token: Option<&str>, args: &[&str]) -> std::process::Output {
    strata_in(&[("STRATA_TOKEN", token)], args)
}

/// Runs `strata` with each variable set to its value, or unset.
fn strata_in(env: &[(&str, Option<&str>)], args: &[&str]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
    command.args(args);
    for (name, value) in env {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    command.output().unwrap()
}

#[test]
fn every_call_to_a_scheduler_with_tokens_needs_one_that_allows_it() {
    let (embedded, distributed) = embedded_and_copy("access", "0.002");
    let dir = workdir("access-tokens");
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("tokens");
    std::fs::write(
        &token_file,
        format!("# the ops team\nfull {FULL}\nread-only {READ_ONLY}\n"),
    )
    .unwrap();
    // The executors present the full token from their environment.
    let cluster = Cluster::start_in(
        "access",
        2,
        &["--token-file", token_file.to_str().unwrap()],
        &[("STRATA_TOKEN".to_owned(), FULL.to_owned())],
    );
    let warehouse = distributed.to_str().unwrap();
    let submit = [
        "submit",
        &example(),
        "--scheduler",
        &cluster.address,
        "--warehouse",
        warehouse,
    ];

    let missing = strata_with(None, &submit);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("this scheduler needs a token: set STRATA_TOKEN or pass --token"),
        "{}",
        stderr(&missing)
    );
    let wrong = strata_with(Some("a-wrong-token-0123456789abcdef"), &submit);
    assert!(!wrong.status.success());
    assert!(
        stderr(&wrong).contains("the token is not one this scheduler accepts"),
        "{}",
        stderr(&wrong)
    );
    let read_only = strata_with(Some(READ_ONLY), &submit);
    assert!(!read_only.status.success());
    assert!(
        stderr(&read_only).contains("a read-only token cannot submit a pipeline"),
        "{}",
        stderr(&read_only)
    );
    assert!(
        !distributed.join("raw").exists(),
        "a refused submission built something"
    );

    // `--token` works as the environment does, and the run's work reaches the executors.
    let mut with_flag = submit.to_vec();
    with_flag.extend(["--token", FULL]);
    let submitted = strata_with(None, &with_flag);
    assert!(
        submitted.status.success(),
        "{}\n{}",
        stdout(&submitted),
        stderr(&submitted)
    );
    assert_same_tables(&embedded, &distributed);

    // A read-only token lists runs.
    let runs = strata_with(Some(READ_ONLY), &["runs", "--scheduler", &cluster.address]);
    assert!(runs.status.success(), "{}", stderr(&runs));
    assert!(stdout(&runs).contains("succeeded"), "{}", stdout(&runs));
    let runs = strata_with(None, &["runs", "--scheduler", &cluster.address]);
    assert!(!runs.status.success());

    // Ballista's service on the same port: a query client without a token is refused,
    // and so is one with a read-only token, which could otherwise run any plan.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for (token, expected) in [
        (None, "needs a token"),
        (Some(READ_ONLY), "read-only token cannot run work"),
    ] {
        let engine = Engine::cluster(&cluster.address, &with_token(token));
        let refused = runtime.block_on(async {
            let ctx = engine.session();
            let plan = Arc::new(EmptyExec::new(Arc::new(
                datafusion::arrow::datatypes::Schema::empty(),
            )));
            match engine.stream(plan, &ctx, "access-check").await {
                Ok(stream) => futures::TryStreamExt::try_collect::<Vec<_>>(stream)
                    .await
                    .err()
                    .map(|error| error.to_string()),
                Err(error) => Some(error.to_string()),
            }
        });
        let refused = refused.expect("a query without a full token ran");
        assert!(refused.contains(expected), "{refused}");
    }
    let engine = Engine::cluster(&cluster.address, &with_token(Some(FULL)));
    let ran = runtime.block_on(async {
        let ctx = engine.session();
        let plan = Arc::new(EmptyExec::new(Arc::new(
            datafusion::arrow::datatypes::Schema::empty(),
        )));
        futures::TryStreamExt::try_collect::<Vec<_>>(
            engine.stream(plan, &ctx, "access-check").await.unwrap(),
        )
        .await
    });
    assert!(ran.is_ok(), "{ran:?}");

    // An executor without a token cannot join.
    let executor = strata_with(
        None,
        &[
            "executor",
            "--scheduler",
            &cluster.address,
            "--concurrent-tasks",
            "1",
        ],
    );
    assert!(!executor.status.success());
    assert!(
        stderr(&executor).contains("needs a token"),
        "{}",
        stderr(&executor)
    );
}

#[test]
fn a_scheduler_refuses_a_short_token_and_a_broken_token_file() {
    let dir = workdir("access-bad-tokens");
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("tokens");
    std::fs::write(&token_file, "full short\n").unwrap();
    let scheduler = strata(&[
        "scheduler",
        "--listen",
        "127.0.0.1:0",
        "--token-file",
        token_file.to_str().unwrap(),
    ]);
    assert!(!scheduler.status.success());
    assert!(
        stderr(&scheduler).contains(":1: a token needs at least 16 characters"),
        "{}",
        stderr(&scheduler)
    );
    let missing = strata(&[
        "scheduler",
        "--listen",
        "127.0.0.1:0",
        "--token-file",
        dir.join("nothing-here").to_str().unwrap(),
    ]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("cannot read the token file"),
        "{}",
        stderr(&missing)
    );
}

/// A self-signed certificate for 127.0.0.1 and `name`, and its key.
fn self_signed(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", &format!("/CN={name}")])
        .args([
            "-addext",
            &format!("subjectAltName=IP:127.0.0.1,DNS:{name}"),
        ])
        // rustls refuses a CA certificate as a server's own: a leaf, self-signed.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(made.status.success(), "{}", stderr(&made));
    (cert, key)
}

#[test]
fn the_scheduler_port_over_tls_with_a_self_signed_certificate_runs_the_example() {
    let (embedded, distributed) = embedded_and_copy("access-tls", "0.002");
    let dir = workdir("access-tls-cert");
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = self_signed(&dir, "localhost");
    let (cert, key) = (
        cert.to_str().unwrap().to_owned(),
        key.to_str().unwrap().to_owned(),
    );
    // Every process trusts the certificate and presents the token.
    let cluster = Cluster::start_in(
        "access-tls",
        2,
        &["--tls-cert", &cert, "--tls-key", &key],
        &[
            ("STRATA_TLS_CA".to_owned(), cert.clone()),
            ("STRATA_TOKEN".to_owned(), FULL.to_owned()),
        ],
    );
    let warehouse = distributed.to_str().unwrap();
    let submit = [
        "submit",
        &example(),
        "--scheduler",
        &cluster.address,
        "--warehouse",
        warehouse,
    ];

    let submitted = strata_in(
        &[("STRATA_TOKEN", Some(FULL)), ("STRATA_TLS_CA", Some(&cert))],
        &submit,
    );
    assert!(
        submitted.status.success(),
        "{}\n{}",
        stdout(&submitted),
        stderr(&submitted)
    );
    assert_same_tables(&embedded, &distributed);

    // A client that does not trust the certificate, or speaks plain gRPC, gets nowhere.
    let (other, _) = self_signed(&dir, "other");
    for (ca, expected) in [
        (Some(other.to_str().unwrap()), "invalid peer certificate"),
        // Plain HTTP/2 against TLS ends in one transport error or another.
        (None, ""),
    ] {
        let refused = strata_in(
            &[("STRATA_TOKEN", Some(FULL)), ("STRATA_TLS_CA", ca)],
            &["runs", "--scheduler", &cluster.address],
        );
        assert!(!refused.status.success(), "{ca:?}: {}", stdout(&refused));
        let said = stderr(&refused);
        assert!(
            said.contains(&format!(
                "the Strata scheduler at https://{}",
                cluster.address
            )) || said.contains(&format!("the scheduler at http://{}", cluster.address)),
            "{ca:?}: {said}"
        );
        assert!(said.contains(expected), "{ca:?}: {said}");
    }
}

/// A CA called `name`, and a certificate it signed for the cluster's name, laid out as a
/// Kubernetes TLS Secret mounts (`ca.crt`, `tls.crt`, `tls.key`) in `dir/name`.
fn cluster_identity(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let at = dir.join(name);
    std::fs::create_dir_all(&at).unwrap();
    std::fs::write(
        at.join("leaf.ext"),
        "subjectAltName=DNS:strata-cluster\nbasicConstraints=critical,CA:FALSE\n\
         extendedKeyUsage=serverAuth,clientAuth\n",
    )
    .unwrap();
    let ca_subject = format!("/CN={name} CA");
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    for args in [
        [
            &["req", "-x509", "-days", "2", "-subj", &ca_subject][..],
            &key,
            &["-keyout", "ca.key", "-out", "ca.crt"],
        ]
        .concat(),
        [
            &["req", "-subj", "/CN=strata-cluster"][..],
            &key,
            &["-keyout", "tls.key", "-out", "tls.csr"],
        ]
        .concat(),
        vec![
            "x509",
            "-req",
            "-in",
            "tls.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
            "-out",
            "tls.crt",
        ],
    ] {
        let made = Command::new("openssl")
            .current_dir(&at)
            .args(&args)
            .output()
            .expect("openssl runs");
        assert!(made.status.success(), "{args:?}: {}", stderr(&made));
    }
    at
}

/// Whether the executor port on 127.0.0.1 answers a Flight call from a client with
/// this TLS (none: plain gRPC). The task port answers with "unimplemented", which is
/// still an answer: the call got through.
fn answers(port: u16, tls: Option<tonic::transport::ClientTlsConfig>) -> bool {
    use arrow_flight::flight_service_client::FlightServiceClient;
    use tonic::transport::Endpoint;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://127.0.0.1:{port}"))
            .unwrap()
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(5));
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(tls).unwrap();
        }
        let Ok(channel) = endpoint.connect().await else {
            return false;
        };
        let mut client = FlightServiceClient::new(channel);
        match client.list_flights(arrow_flight::Criteria::default()).await {
            Ok(_) => true,
            Err(status) => status.code() == tonic::Code::Unimplemented,
        }
    })
}

#[test]
fn the_executors_ports_admit_only_a_certificate_of_the_clusters_ca() {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    strata_engine::scheduler_client::install_crypto();
    let (embedded, distributed) = embedded_and_copy("access-mtls", "0.002");
    let dir = workdir("access-mtls-identity");
    let identity = cluster_identity(&dir, "cluster");
    let outsider = cluster_identity(&dir, "outsider");
    let env = [(
        "STRATA_CLUSTER_TLS".to_owned(),
        identity.to_str().unwrap().to_owned(),
    )];
    let mut cluster = Cluster::start_in("access-mtls", 2, &[], &env);
    // Tasks, shuffles between the two executors and results all cross the executors' ports.
    let submitted = cluster.submit(&example(), &distributed);
    assert!(
        submitted.status.success(),
        "{}\n{}",
        stdout(&submitted),
        stderr(&submitted)
    );
    assert_same_tables(&embedded, &distributed);

    let (data_port, task_port) = (free_port(), free_port());
    cluster.add_executor_with(
        "access-mtls-probed",
        &[
            "--flight-port",
            &data_port.to_string(),
            "--grpc-port",
            &task_port.to_string(),
        ],
    );
    let read = |dir: &std::path::Path, name: &str| std::fs::read(dir.join(name)).unwrap();
    let trusting = || {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(&identity, "ca.crt")))
            .domain_name("strata-cluster")
    };
    let presenting = |of: &std::path::Path| {
        trusting().identity(Identity::from_pem(read(of, "tls.crt"), read(of, "tls.key")))
    };
    for port in [data_port, task_port] {
        assert!(
            answers(port, Some(presenting(&identity))),
            "{port}: the cluster's own certificate"
        );
        assert!(!answers(port, None), "{port}: plain gRPC");
        assert!(
            !answers(port, Some(trusting())),
            "{port}: TLS without a certificate"
        );
        assert!(
            !answers(port, Some(presenting(&outsider))),
            "{port}: another CA's certificate"
        );
    }

    // An identity that is not one is named at start.
    let broken = strata_in(
        &[(
            "STRATA_CLUSTER_TLS",
            Some(dir.join("nothing-here").to_str().unwrap()),
        )],
        &["executor", "--scheduler", &cluster.address],
    );
    assert!(!broken.status.success());
    assert!(
        stderr(&broken).contains("the cluster identity") && stderr(&broken).contains("ca.crt"),
        "{}",
        stderr(&broken)
    );
}
