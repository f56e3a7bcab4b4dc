use cds_events_store::{ConnOptions, MetaKey, open};

const COUNT: MetaKey<i64> = MetaKey::new("count");
const NAME: MetaKey<String> = MetaKey::new("name");

fn db() -> (tempfile::TempDir, rusqlite::Connection) {
    let dir = tempfile::tempdir().expect("tempdir");
    let conn = open(&dir.path().join("t.db"), &ConnOptions::default()).expect("open");
    conn.execute_batch("CREATE TABLE meta (key TEXT PRIMARY KEY, value)")
        .expect("meta");
    (dir, conn)
}

#[test]
fn a_key_never_set_reads_as_none() {
    let (_dir, conn) = db();
    assert_eq!(COUNT.get(&conn).expect("get"), None);
}

#[test]
fn set_then_get_returns_the_value_with_its_type() {
    let (_dir, conn) = db();
    COUNT.set(&conn, &42).expect("set");
    NAME.set(&conn, &"12345678".to_owned()).expect("set");
    assert_eq!(COUNT.get(&conn).expect("get"), Some(42));
    // Text that looks like a number stays text.
    assert_eq!(NAME.get(&conn).expect("get"), Some("12345678".to_owned()));
}

#[test]
fn set_replaces_the_previous_value() {
    let (_dir, conn) = db();
    COUNT.set(&conn, &1).expect("set");
    COUNT.set(&conn, &2).expect("set");
    assert_eq!(COUNT.get(&conn).expect("get"), Some(2));
}

#[test]
fn a_value_set_in_a_rolled_back_transaction_is_not_kept() {
    let (_dir, mut conn) = db();
    COUNT.set(&conn, &1).expect("set");
    {
        let tx = conn.transaction().expect("tx");
        COUNT.set(&tx, &2).expect("set");
        tx.rollback().expect("rollback");
    }
    assert_eq!(COUNT.get(&conn).expect("get"), Some(1));
}
