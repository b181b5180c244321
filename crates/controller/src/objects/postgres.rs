//! PostgreSQL: `init.sql` as a ConfigMap, optional storage, the Deployment, its Service and the NetworkPolicy that
//! admits only the app.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, PodSpec, Probe, Service, Volume,
    VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::*;

/// The app's PostgreSQL role and its grants (psql variable `app_password`).
pub const APP_ROLE_SQL: &str = include_str!("../../../../least-privilege/app-role.sql");
/// The second script of `/docker-entrypoint-initdb.d` (after init.sql): creates the app's role with the
/// password from its environment, read by psql's `\getenv` so it is in no argv.
pub const APP_ROLE_SCRIPT_KEY: &str = "zz-app-role.sh";

/// The shell script the postgres image runs after init.sql.
pub fn app_role_script() -> String {
    format!(
        "# The app's role: it reads the catalogue and writes products (least-privilege/app-role.sql).\n\
         psql -v ON_ERROR_STOP=1 --username \"$POSTGRES_USER\" --dbname \"$POSTGRES_DB\" <<'SQL'\n\
         \\getenv app_password APP_DB_PASSWORD\n{APP_ROLE_SQL}SQL\n"
    )
}

pub fn init_sql_config_map(s: &Settings) -> ConfigMap {
    ConfigMap {
        metadata: meta(s, names::INIT_SQL, labels(names::POSTGRES, "database")),
        data: Some(BTreeMap::from([
            ("init.sql".to_owned(), INIT_SQL.to_owned()),
            (APP_ROLE_SCRIPT_KEY.to_owned(), app_role_script()),
        ])),
        ..ConfigMap::default()
    }
}

pub fn postgres_pvc(s: &Settings) -> Option<PersistentVolumeClaim> {
    let PostgresStorage::Pvc { size } = &s.postgres_storage else { return None };
    Some(PersistentVolumeClaim {
        metadata: meta(s, names::POSTGRES_DATA, labels(names::POSTGRES, "database")),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_owned(), Quantity(size.clone()))])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    })
}

pub fn postgres_deployment(s: &Settings) -> Deployment {
    let data_volume = match &s.postgres_storage {
        PostgresStorage::EmptyDir => {
            Volume { name: "data".into(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Volume::default() }
        }
        PostgresStorage::Pvc { .. } => Volume {
            name: "data".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: names::POSTGRES_DATA.into(),
                ..PersistentVolumeClaimVolumeSource::default()
            }),
            ..Volume::default()
        },
    };
    let container = Container {
        name: names::POSTGRES.into(),
        image: Some(s.postgres_image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        ports: Some(vec![container_port("postgres", POSTGRES_PORT)]),
        env: Some(vec![
            env("POSTGRES_USER", names::DATABASE_USER),
            env("POSTGRES_DB", names::DATABASE),
            env_from_secret("POSTGRES_PASSWORD", secret_keys::POSTGRES_PASSWORD),
            // Read by the app-role script of /docker-entrypoint-initdb.d on the first start.
            env_from_secret("APP_DB_PASSWORD", secret_keys::APP_DB_PASSWORD),
            env("PGDATA", PGDATA),
        ]),
        // Over TCP, so the server the image runs only on its socket while init.sql loads does not count.
        readiness_probe: Some(Probe {
            period_seconds: Some(5),
            timeout_seconds: Some(3),
            failure_threshold: Some(3),
            ..exec_probe(&["pg_isready", "-h", "127.0.0.1", "-U", names::DATABASE_USER, "-d", names::DATABASE])
        }),
        // Over the socket, so the first start (initdb, then init.sql) is not taken for a hang.
        liveness_probe: Some(Probe {
            initial_delay_seconds: Some(30),
            period_seconds: Some(10),
            timeout_seconds: Some(5),
            failure_threshold: Some(6),
            ..exec_probe(&["pg_isready", "-U", names::DATABASE_USER])
        }),
        resources: Some(resources(("100m", "256Mi"), ("1", "512Mi"))),
        security_context: Some(container_security(false)),
        volume_mounts: Some(vec![
            mount("data", "/var/lib/postgresql/data", false),
            mount("init-sql", "/docker-entrypoint-initdb.d", true),
        ]),
        ..Container::default()
    };
    let pod = PodSpec {
        automount_service_account_token: Some(false),
        security_context: Some(pod_security(POSTGRES_UID, POSTGRES_UID)),
        containers: vec![container],
        volumes: Some(vec![
            data_volume,
            Volume {
                name: "init-sql".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: names::INIT_SQL.into(),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            },
        ]),
        ..PodSpec::default()
    };
    // Recreate: two PostgreSQL pods must never share one data volume during a rollout.
    let workload = Workload {
        name: names::POSTGRES,
        component: "database",
        replicas: 1,
        recreate: true,
        pod_annotations: None,
        pod,
    };
    deployment(s, workload)
}

pub fn postgres_service(s: &Settings) -> Service {
    cluster_service(s, names::POSTGRES, "database", "postgres", POSTGRES_PORT)
}

/// PostgreSQL accepts connections from the app's pods only.
pub fn postgres_network_policy(s: &Settings) -> NetworkPolicy {
    allow_app_only(s, names::POSTGRES_POLICY, names::POSTGRES, "database", POSTGRES_PORT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::test_support::*;

    #[test]
    fn postgres_loads_init_sql_and_is_ready_over_tcp() {
        let d = postgres_deployment(&Settings::default());
        let c = container(&d);
        let probe = c.readiness_probe.as_ref().unwrap().exec.as_ref().unwrap().command.clone().unwrap();
        assert_eq!(probe[0], "pg_isready");
        assert!(probe.windows(2).any(|w| w == ["-h", "127.0.0.1"]));
        let mounts = c.volume_mounts.clone().unwrap();
        assert!(mounts.iter().any(|m| m.mount_path == "/docker-entrypoint-initdb.d" && m.read_only == Some(true)));
        assert!(PGDATA.starts_with(&format!("{}/", mounts[0].mount_path)));
        assert_eq!(secret_ref(c, "POSTGRES_PASSWORD").unwrap().key, "postgres-password");
        assert_eq!(secret_ref(c, "APP_DB_PASSWORD").unwrap().key, "app-db-password");
        let script = &init_sql_config_map(&Settings::default()).data.unwrap()[APP_ROLE_SCRIPT_KEY];
        assert!(script.contains("<<'SQL'\n\\getenv app_password APP_DB_PASSWORD\n"), "{script}");
        assert!(script.contains("CREATE ROLE cache_demo_app LOGIN PASSWORD :'app_password';"), "{script}");
        let psql = script.lines().find(|l| l.starts_with("psql")).unwrap();
        assert!(script.ends_with("\nSQL\n") && !psql.contains("app_password"), "the password in argv: {psql}");
        let pod = d.spec.as_ref().unwrap().template.spec.clone().unwrap();
        assert!(pod.volumes.unwrap()[0].empty_dir.is_some());
        let cm = init_sql_config_map(&Settings::default());
        assert!(cm.data.unwrap()["init.sql"].contains("CREATE EXTENSION IF NOT EXISTS pg_trgm"));
    }

    #[test]
    fn pvc_storage_adds_a_claim_and_mounts_it() {
        let s = Settings { postgres_storage: PostgresStorage::Pvc { size: "2Gi".into() }, ..Settings::default() };
        let o = Objects::build(&s, &Credentials::Placeholders);
        let pvc = o.postgres_data.clone().unwrap();
        assert_eq!(pvc.metadata.name.as_deref(), Some("postgres-data"));
        assert_eq!(pvc.spec.unwrap().resources.unwrap().requests.unwrap()["storage"].0, "2Gi");
        let pod = o.postgres.spec.clone().unwrap().template.spec.unwrap();
        assert_eq!(pod.volumes.unwrap()[0].persistent_volume_claim.as_ref().unwrap().claim_name, "postgres-data");
        assert!(o.all().iter().any(|x| x.kind() == "PersistentVolumeClaim"));
    }
}
