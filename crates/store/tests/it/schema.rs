use cds_events_store::meta::SCHEMA_VERSION;
use cds_events_store::{ConnOptions, Error, Migration, Schema, Step, open};
use rusqlite::Connection;

/// 1 had `t(a)`; 2 added `b`.
const FROM_1: Migration = Migration {
    from: 1,
    step: Step::Sql("ALTER TABLE t ADD COLUMN b INTEGER; UPDATE t SET b = a + 1;"),
};

/// 3 added `c`, filled from `b`: a step that needs the one before it.
const FROM_2: Migration = Migration {
    from: 2,
    step: Step::Run(|tx| {
        tx.execute_batch("ALTER TABLE t ADD COLUMN c INTEGER; UPDATE t SET c = b * 10;")?;
        Ok(())
    }),
};

/// Listed out of order: steps are found by the version they start from.
const V3: Schema = Schema {
    create: "CREATE TABLE IF NOT EXISTS t (a INTEGER, b INTEGER, c INTEGER);",
    version: 3,
    unversioned: 1,
    migrations: &[FROM_2, FROM_1],
};

fn db() -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().expect("tempdir");
    let conn = open(&dir.path().join("t.db"), &ConnOptions::default()).expect("open");
    (dir, conn)
}

/// What version 1 wrote.
fn version_1(conn: &Connection, with_version: bool) {
    conn.execute_batch("CREATE TABLE t (a INTEGER); INSERT INTO t(a) VALUES (1);")
        .expect("v1");
    if with_version {
        conn.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value);
             INSERT INTO meta VALUES ('schema_version', 1);",
        )
        .expect("meta");
    }
}

fn row(conn: &Connection) -> (i64, i64, i64) {
    conn.query_row("SELECT a, b, c FROM t", [], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
    .expect("row")
}

/// Applies [`V3`], which must say it found `found` and leave the database at
/// version 3 with its row migrated.
fn apply_v3(conn: &Connection, found: Option<i64>) {
    assert_eq!(V3.apply(conn).expect("apply"), found);
    assert_eq!(row(conn), (1, 2, 20));
    assert_eq!(SCHEMA_VERSION.get(conn).expect("get"), Some(3));
}

#[test]
fn a_new_database_is_created_at_the_current_version_without_migrating() {
    let (_dir, conn) = db();
    let broken = Schema {
        migrations: &[Migration {
            from: 1,
            step: Step::Sql("this is not sql"),
        }],
        ..V3
    };
    assert_eq!(broken.apply(&conn).expect("apply"), None);
    assert_eq!(SCHEMA_VERSION.get(&conn).expect("get"), Some(3));
}

#[test]
fn migrations_run_in_order_once() {
    let (_dir, conn) = db();
    version_1(&conn, true);
    apply_v3(&conn, Some(1));
    // A second open finds nothing to do (re-adding a column would fail).
    apply_v3(&conn, Some(3));
}

#[test]
fn a_database_without_a_version_is_at_the_unversioned_one() {
    let (_dir, conn) = db();
    version_1(&conn, false);
    apply_v3(&conn, None);
}

#[test]
fn a_newer_database_is_refused_naming_the_file_and_both_versions() {
    let (dir, conn) = db();
    version_1(&conn, true);
    conn.execute("UPDATE meta SET value = 5 WHERE key = 'schema_version'", [])
        .expect("v5");
    let e = V3.apply(&conn).expect_err("refused");
    match &e {
        Error::SchemaTooNew { path, found, known } => {
            assert!(path.ends_with("t.db"), "{}", path.display());
            assert_eq!((*found, *known), (5, 3));
        }
        other => panic!("unexpected error: {other}"),
    }
    let message = e.to_string();
    assert!(
        message.contains(&dir.path().join("t.db").display().to_string())
            && message.contains('5')
            && message.contains('3'),
        "{message}"
    );
    // Nothing was changed.
    assert_eq!(SCHEMA_VERSION.get(&conn).expect("get"), Some(5));
}

#[test]
fn a_failing_step_keeps_the_database_at_the_version_before_it() {
    let (_dir, conn) = db();
    version_1(&conn, true);
    let failing = Schema {
        migrations: &[
            FROM_1,
            Migration {
                from: 2,
                step: Step::Sql("ALTER TABLE t ADD COLUMN c INTEGER; SELECT * FROM missing;"),
            },
        ],
        ..V3
    };
    let e = failing.apply(&conn).expect_err("fails");
    assert!(matches!(e, Error::Migration { from: 2, .. }), "{e}");
    assert_eq!(SCHEMA_VERSION.get(&conn).expect("get"), Some(2));
    // The failed step left nothing: it runs whole once fixed.
    apply_v3(&conn, Some(2));
}

#[test]
fn a_version_no_step_starts_from_is_an_error() {
    let (_dir, conn) = db();
    version_1(&conn, true);
    let gap = Schema {
        migrations: &[FROM_2],
        ..V3
    };
    let e = gap.apply(&conn).expect_err("no step from 1");
    assert!(matches!(e, Error::NoMigration { found: 1, .. }), "{e}");
}
