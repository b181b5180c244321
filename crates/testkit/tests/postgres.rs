//! PgServer against a real PostgreSQL.

mod common;

use std::thread;

use cache_demo_testkit::{Error, PgServer, fresh_database, fresh_database_with_template, init_sql_path, shared_pg};

/// The database name at the end of a URL from `PgServer::url`.
fn db_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or_default()
}

#[test]
fn shared_server_answers_queries() {
    let pg = shared_pg();
    assert_eq!(pg.psql("postgres", "select 1").unwrap(), "1");
    assert!(pg.is_running());
    assert_eq!(pg.url("x"), format!("postgres://postgres@127.0.0.1:{}/x", pg.port()));
}

#[test]
fn psql_reports_sql_errors() {
    let err = shared_pg().psql("postgres", "select * from no_such_table").unwrap_err();
    assert!(matches!(err, Error::Command { .. }), "{err:?}");
    assert!(err.to_string().contains("no_such_table"), "{err}");
}

#[test]
fn parallel_fresh_databases_are_distinct_and_loaded_from_init_sql() {
    assert!(init_sql_path().is_file(), "{} is missing", init_sql_path().display());
    let pg = shared_pg();
    let urls: Vec<String> =
        [thread::spawn(|| fresh_database(shared_pg())), thread::spawn(|| fresh_database(shared_pg()))]
            .into_iter()
            .map(|t| t.join().unwrap().unwrap())
            .collect();
    assert_ne!(urls[0], urls[1]);
    for url in &urls {
        let db = db_name(url);
        let counts = pg
            .psql(
                db,
                "select (select count(*) from categories), (select count(*) from products), \
                 (select count(*) from reviews)",
            )
            .unwrap();
        assert_eq!(counts, "10|500|5000", "row counts in {db}");
    }
}

#[test]
fn fresh_databases_from_one_template_are_independent() {
    let sql = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        sql.path(),
        "create table items (id int primary key);\ninsert into items select generate_series(1, 3);\n",
    )
    .unwrap();
    let pg = shared_pg();
    let [a, b] = [(); 2].map(|()| {
        let path = sql.path().to_owned();
        thread::spawn(move || fresh_database_with_template(shared_pg(), "items_template", &path))
    });
    let (a, b) = (a.join().unwrap().unwrap(), b.join().unwrap().unwrap());

    pg.psql(db_name(&a), "delete from items").unwrap();
    assert_eq!(pg.psql(db_name(&a), "select count(*) from items").unwrap(), "0");
    assert_eq!(pg.psql(db_name(&b), "select count(*) from items").unwrap(), "3");
}

#[test]
fn loading_a_missing_file_fails_clearly() {
    let err = shared_pg().create_database_from_file("never_created", "/nonexistent/init.sql".as_ref()).unwrap_err();
    assert!(matches!(err, Error::Missing { .. }), "{err:?}");
}

#[test]
fn stop_then_restart_keeps_port_and_data() {
    let mut pg = PgServer::start().unwrap();
    let port = pg.port();
    pg.psql("postgres", "create table kept (v text); insert into kept values ('still here')").unwrap();

    pg.stop().unwrap();
    assert!(!pg.is_running());
    assert!(pg.pid().is_none());
    assert!(pg.psql("postgres", "select 1").is_err());

    pg.restart().unwrap();
    assert!(pg.is_running());
    assert_eq!(pg.port(), port);
    assert_eq!(pg.psql("postgres", "select v from kept").unwrap(), "still here");
}

#[test]
fn dropping_stops_the_server_and_removes_its_directory() {
    let pg = PgServer::start().unwrap();
    let pid = pg.pid().unwrap();
    let dir = pg.dir().to_owned();
    assert!(dir.join("data").is_dir());

    drop(pg);
    common::assert_process_and_dir_gone(pid, &dir);
}
