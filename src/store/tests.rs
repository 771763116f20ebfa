use std::path::PathBuf;

use super::*;

const KEY_A: &str = "key-aaaa-1111";
const KEY_B: &str = "key-bbbb-2222";
const KEY_C: &str = "key-cccc-3333";

fn cams(list: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    list.iter()
        .map(|(id, name, key)| (id.to_string(), name.to_string(), key.to_string()))
        .collect()
}

fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("data").join("tally.db")
}

fn ids(cameras: &[CameraRow]) -> Vec<(&str, &str, i64)> {
    cameras
        .iter()
        .map(|c| (c.event.as_str(), c.id.as_str(), c.position))
        .collect()
}

fn switch(at: &str, from: Option<&str>, to: &str, reason: &str) -> SwitchRow {
    SwitchRow {
        at: at.into(),
        from: from.map(Into::into),
        to: to.into(),
        reason: reason.into(),
    }
}

fn assert_open_error(error: StoreError, path: &Path) {
    let text = error.to_string();
    match error {
        StoreError::Open { path: named, .. } => assert_eq!(named, path.display().to_string()),
        other => panic!("expected StoreError::Open, got {other:?}"),
    }
    assert!(text.contains(&path.display().to_string()), "{text}");
}

#[test]
fn migrations_apply_on_a_fresh_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = Store::open(&path).unwrap();
    assert!(path.exists(), "parent directories and file created");
    assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
    assert_eq!(store.path(), path);

    let conn = store.lock();
    let pragma = |name: &str| -> String {
        conn.query_row(&format!("PRAGMA {name}"), [], |row| {
            row.get::<_, rusqlite::types::Value>(0)
        })
        .map(|value| format!("{value:?}"))
        .unwrap()
    };
    assert_eq!(pragma("journal_mode"), "Text(\"wal\")");
    assert_eq!(pragma("synchronous"), "Integer(1)"); // NORMAL
    assert_eq!(pragma("foreign_keys"), "Integer(1)");
    assert_eq!(pragma("busy_timeout"), "Integer(5000)");
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        tables,
        [
            "cameras",
            "destinations",
            "events",
            "seeded_cameras",
            "seeded_events",
            "switches"
        ]
    );
}

#[test]
fn reopening_keeps_data_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = Store::open(&path).unwrap();
    let event = store.create_event("e1", "Final").unwrap();
    store.add_camera("e1", "a", "Wide", KEY_A).unwrap();
    drop(store);

    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
    assert_eq!(store.events().unwrap(), vec![event]);
    assert_eq!(store.cameras("e1").unwrap()[0].stream_key, KEY_A);
}

#[test]
fn a_second_open_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let first = Store::open(&path).unwrap();
    first.create_event("e1", "Final").unwrap();
    // A second open, even while the first is still open, migrates nothing and changes nothing.
    let second = Store::open(&path).unwrap();
    assert_eq!(second.schema_version().unwrap(), MIGRATIONS.len() as i64);
    assert_eq!(second.events().unwrap(), first.events().unwrap());
    drop((first, second));
    let third = Store::open(&path).unwrap();
    assert_eq!(third.schema_version().unwrap(), MIGRATIONS.len() as i64);
    assert_eq!(third.events().unwrap().len(), 1);
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = Store::open(&path).unwrap();
    store
        .lock()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    drop(store);
    let error = Store::open(&path).unwrap_err();
    assert!(error.to_string().contains("schema version 99"), "{error}");
    assert_open_error(error, &path);
}

#[test]
fn a_corrupt_file_is_refused_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    for (name, garbage) in [
        (
            "big.db",
            (0..4096u32).map(|i| (i * 7 + 3) as u8).collect::<Vec<u8>>(),
        ),
        ("small.db", b"this is not a database at all".to_vec()),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, &garbage).unwrap();
        let error = Store::open(&path).unwrap_err();
        assert_open_error(error, &path);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            garbage,
            "the file is left as it was"
        );
    }
}

#[test]
fn an_unwritable_location_is_refused_naming_the_path() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let path = file.path().join("x").join("tally.db");
    let error = Store::open(&path).unwrap_err();
    assert!(error.to_string().contains("creating directory"), "{error}");
    assert_open_error(error, &path);
}

#[test]
fn seed_inserts_once() {
    let store = Store::open_in_memory().unwrap();
    let list = cams(&[("a", "Wide", KEY_A), ("b", "Close", KEY_B)]);
    store.seed_event("e1", "Final", &list).unwrap();
    store.seed_event("e1", "Final", &list).unwrap();
    let events = store.events().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].name, "Final");
    assert_eq!(events[0].status, "waiting");
    assert_eq!(events[0].active_camera, None);
    let cameras = store.cameras("e1").unwrap();
    assert_eq!(ids(&cameras), [("e1", "a", 0), ("e1", "b", 1)]);
    assert_eq!(cameras[1].name, "Close");
    assert_eq!(cameras[1].stream_key, KEY_B);
}

#[test]
fn seed_never_overwrites_api_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let list = cams(&[("a", "Wide", KEY_A), ("b", "Close", KEY_B)]);
    let store = Store::open(&path).unwrap();
    store.seed_event("e1", "Final", &list).unwrap();
    store.set_key("e1", "a", "rotated-key-1").unwrap();
    store.delete_camera("e1", "b").unwrap();
    store
        .add_camera("e1", "b", "Renamed", "rotated-key-2")
        .unwrap();
    store.set_status("e1", "live").unwrap();
    store.set_active("e1", Some("b")).unwrap();
    // No rename call exists in the API; stand in for one.
    store
        .lock()
        .execute(
            "UPDATE events SET name = 'Renamed final' WHERE id = 'e1'",
            [],
        )
        .unwrap();
    let before = (store.events().unwrap(), store.all_cameras().unwrap());
    drop(store);

    // A restart seeds again from the unchanged config.
    let store = Store::open(&path).unwrap();
    store.seed_event("e1", "Final", &list).unwrap();
    assert_eq!(
        (store.events().unwrap(), store.all_cameras().unwrap()),
        before
    );
    let event = store.event("e1").unwrap();
    assert_eq!(event.name, "Renamed final");
    assert_eq!(
        (event.status.as_str(), event.active_camera.as_deref()),
        ("live", Some("b"))
    );
    let cameras = store.cameras("e1").unwrap();
    assert_eq!(cameras[0].stream_key, "rotated-key-1");
    assert_eq!(
        (cameras[1].name.as_str(), cameras[1].stream_key.as_str()),
        ("Renamed", "rotated-key-2")
    );
}

#[test]
fn seed_does_not_bring_back_what_the_api_deleted() {
    let store = Store::open_in_memory().unwrap();
    let list = cams(&[("a", "Wide", KEY_A), ("b", "Close", KEY_B)]);
    store.seed_event("e1", "Final", &list).unwrap();
    store
        .seed_event("e2", "Semi", &cams(&[("c", "Cam", KEY_C)]))
        .unwrap();
    store.delete_camera("e1", "a").unwrap();
    store.delete_event("e2").unwrap();

    store.seed_event("e1", "Final", &list).unwrap();
    store
        .seed_event("e2", "Semi", &cams(&[("c", "Cam", KEY_C)]))
        .unwrap();
    assert_eq!(ids(&store.all_cameras().unwrap()), [("e1", "b", 0)]);
    assert!(matches!(store.event("e2"), Err(StoreError::NotFound(_))));
}

#[test]
fn seed_adds_cameras_new_to_the_config_and_adopts_api_rows() {
    let store = Store::open_in_memory().unwrap();
    store.create_event("e1", "Made by the API").unwrap();
    store
        .add_camera("e1", "a", "API camera", "api-key-0000")
        .unwrap();

    store
        .seed_event("e1", "Final", &cams(&[("a", "Wide", KEY_A)]))
        .unwrap();
    store
        .seed_event(
            "e1",
            "Final",
            &cams(&[("a", "Wide", KEY_A), ("c", "New", KEY_C)]),
        )
        .unwrap();
    assert_eq!(store.event("e1").unwrap().name, "Made by the API");
    let cameras = store.cameras("e1").unwrap();
    assert_eq!(ids(&cameras), [("e1", "a", 0), ("e1", "c", 1)]);
    assert_eq!(cameras[0].name, "API camera");
    assert_eq!(cameras[0].stream_key, "api-key-0000");
    assert_eq!(cameras[1].stream_key, KEY_C);
}

#[test]
fn a_failing_seed_leaves_nothing_half_written() {
    let store = Store::open_in_memory().unwrap();
    // The second camera repeats the first one's key: the whole event rolls back.
    let bad = cams(&[("a", "Wide", KEY_A), ("b", "Close", KEY_A)]);
    let error = store.seed_event("e1", "Final", &bad).unwrap_err();
    assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");
    let text = error.to_string();
    assert!(
        text.contains("stream key") && !text.contains(KEY_A),
        "{text}"
    );
    assert!(store.events().unwrap().is_empty());
    assert!(store.all_cameras().unwrap().is_empty());

    // A key already held in another event fails the same way.
    store
        .seed_event("e0", "Other", &cams(&[("x", "X", KEY_C)]))
        .unwrap();
    let clash = cams(&[("a", "Wide", KEY_A), ("b", "Close", KEY_C)]);
    assert!(matches!(
        store.seed_event("e1", "Final", &clash),
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(store.event("e1"), Err(StoreError::NotFound(_))));
    assert_eq!(ids(&store.all_cameras().unwrap()), [("e0", "x", 0)]);

    // Nothing was remembered as seeded: a corrected config seeds everything.
    let good = cams(&[("a", "Wide", KEY_A), ("b", "Close", KEY_B)]);
    store.seed_event("e1", "Final", &good).unwrap();
    assert_eq!(
        ids(&store.cameras("e1").unwrap()),
        [("e1", "a", 0), ("e1", "b", 1)]
    );
}

#[test]
fn create_event_and_conflict() {
    let store = Store::open_in_memory().unwrap();
    let event = store.create_event("e1", "Final").unwrap();
    assert_eq!(event.id, "e1");
    assert_eq!(event.name, "Final");
    assert_eq!(event.status, "waiting");
    assert_eq!(event.active_camera, None);
    let created = chrono::DateTime::parse_from_rfc3339(&event.created_at).unwrap();
    assert_eq!(created.offset().local_minus_utc(), 0);
    assert!(event.created_at.ends_with('Z'));
    assert_eq!(store.event("e1").unwrap(), event);

    let error = store.create_event("e1", "Again").unwrap_err();
    assert!(matches!(error, StoreError::Conflict(_)));
    assert_eq!(error.to_string(), "event e1 already exists");
    assert_eq!(store.event("e1").unwrap().name, "Final");
}

#[test]
fn events_are_ordered_by_creation_then_id() {
    let store = Store::open_in_memory().unwrap();
    store.create_event("m", "M").unwrap();
    store.create_event("z", "Z").unwrap();
    store.create_event("a", "A").unwrap();
    {
        let conn = store.lock();
        conn.execute_batch(
            "UPDATE events SET created_at = '2024-01-01T00:00:02.000Z' WHERE id = 'm';
             UPDATE events SET created_at = '2024-01-01T00:00:01.000Z' WHERE id IN ('z', 'a');",
        )
        .unwrap();
    }
    let order: Vec<String> = store.events().unwrap().into_iter().map(|e| e.id).collect();
    assert_eq!(order, ["a", "z", "m"]);
}

#[test]
fn missing_events_are_not_found() {
    let store = Store::open_in_memory().unwrap();
    let not_found = |result: Result<(), StoreError>| match result {
        Err(StoreError::NotFound(what)) => assert_eq!(what, "event nope"),
        other => panic!("expected NotFound, got {other:?}"),
    };
    not_found(store.event("nope").map(drop));
    not_found(store.delete_event("nope"));
    not_found(store.set_status("nope", "live"));
    not_found(store.set_active("nope", None));
    not_found(store.add_camera("nope", "a", "A", KEY_A).map(drop));
    not_found(store.cameras("nope").map(drop));
    not_found(store.delete_camera("nope", "a"));
    not_found(store.set_key("nope", "a", KEY_A));
    not_found(store.log_switch("nope", &switch("t", None, "a", "operator")));
    not_found(store.switches("nope").map(drop));
    assert_eq!(
        store.event("nope").unwrap_err().to_string(),
        "event nope not found"
    );
}

#[test]
fn delete_event_cascades() {
    let store = Store::open_in_memory().unwrap();
    store.create_event("e1", "Final").unwrap();
    store.create_event("e2", "Semi").unwrap();
    store.add_camera("e1", "a", "Wide", KEY_A).unwrap();
    store.add_camera("e1", "b", "Close", KEY_B).unwrap();
    store.add_camera("e2", "c", "Cam", KEY_C).unwrap();
    store.set_active("e1", Some("a")).unwrap();
    store
        .log_switch(
            "e1",
            &switch("2024-01-01T00:00:00.000Z", None, "a", "operator"),
        )
        .unwrap();
    store
        .log_switch("e2", &switch("2024-01-01T00:00:00.000Z", None, "c", "auto"))
        .unwrap();

    store.delete_event("e1").unwrap();
    assert!(matches!(store.event("e1"), Err(StoreError::NotFound(_))));
    assert_eq!(ids(&store.all_cameras().unwrap()), [("e2", "c", 0)]);
    let left: i64 = store
        .lock()
        .query_row("SELECT COUNT(*) FROM switches", [], |row| row.get(0))
        .unwrap();
    assert_eq!(left, 1, "only e2's switch is left");

    // The keys are free again, and a new event with the same id starts empty.
    store.create_event("e1", "Final again").unwrap();
    assert!(store.cameras("e1").unwrap().is_empty());
    assert!(store.switches("e1").unwrap().is_empty());
    store.add_camera("e1", "a", "Wide", KEY_A).unwrap();
}

#[test]
fn status_round_trip_and_check() {
    let store = Store::open_in_memory().unwrap();
    store.create_event("e1", "Final").unwrap();
    for status in ["live", "paused", "ended", "waiting"] {
        store.set_status("e1", status).unwrap();
        assert_eq!(store.event("e1").unwrap().status, status);
    }
    assert!(matches!(
        store.set_status("e1", "exploded"),
        Err(StoreError::Sqlite(_))
    ));
    assert_eq!(store.event("e1").unwrap().status, "waiting");
}

#[test]
fn active_camera_round_trip_and_checks() {
    let store = Store::open_in_memory().unwrap();
    store.create_event("e1", "Final").unwrap();
    store.create_event("e2", "Semi").unwrap();
    store.add_camera("e1", "a", "Wide", KEY_A).unwrap();
    store.add_camera("e2", "c", "Cam", KEY_C).unwrap();

    store.set_active("e1", Some("a")).unwrap();
    assert_eq!(
        store.event("e1").unwrap().active_camera.as_deref(),
        Some("a")
    );
    match store.set_active("e1", Some("c")) {
        Err(StoreError::NotFound(what)) => assert_eq!(what, "camera c in event e1"),
        other => panic!("a camera of another event: {other:?}"),
    }
    assert!(matches!(
        store.set_active("e1", Some("zz")),
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store.event("e1").unwrap().active_camera.as_deref(),
        Some("a")
    );
    store.set_active("e1", None).unwrap();
    assert_eq!(store.event("e1").unwrap().active_camera, None);
}

#[test]
fn add_camera_positions_and_conflicts() {
    let store = Store::open_in_memory().unwrap();
    store.create_event("e1", "Final").unwrap();
    store.create_event("e2", "Semi").unwrap();
    let a = store.add_camera("e1", "a", "Wide", KEY_A).unwrap();
    assert_eq!(
        a,
        CameraRow {
            event: "e1".into(),
            id: "a".into(),
            name: "Wide".into(),
            stream_key: KEY_A.into(),
            position: 0,
        }
    );
    // Insertion order, not id order.
    store.add_camera("e1", "z", "Zoom", KEY_B).unwrap();
    store.add_camera("e1", "m", "Mid", KEY_C).unwrap();
    // The same id in another event is a different camera, numbered from 0 there.
    let other = store
        .add_camera("e2", "a", "Other", "key-dddd-4444")
        .unwrap();
    assert_eq!(other.position, 0);
    assert_eq!(
        ids(&store.cameras("e1").unwrap()),
        [("e1", "a", 0), ("e1", "z", 1), ("e1", "m", 2)]
    );

    let error = store
        .add_camera("e1", "a", "Again", "key-eeee-5555")
        .unwrap_err();
    assert!(matches!(error, StoreError::Conflict(_)));
    assert_eq!(error.to_string(), "camera a in event e1 already exists");

    // A key held in any event conflicts, and the message never carries the key.
    let error = store.add_camera("e2", "n", "New", KEY_B).unwrap_err();
    assert!(matches!(error, StoreError::Conflict(_)));
    assert_eq!(error.to_string(), "stream key already exists");
    assert!(!format!("{error:?}").contains(KEY_B));
    assert_eq!(store.cameras("e2").unwrap().len(), 1);
}

#[test]
fn all_cameras_groups_by_event_in_priority_order() {
    let store = Store::open_in_memory().unwrap();
    store.create_event("e1", "Final").unwrap();
    store.create_event("e2", "Semi").unwrap();
    store.add_camera("e2", "y", "Y", "key-yyyy-0000").unwrap();
    store.add_camera("e1", "b", "B", KEY_B).unwrap();
    store.add_camera("e2", "x", "X", "key-xxxx-0000").unwrap();
    store.add_camera("e1", "a", "A", KEY_A).unwrap();
    {
        let conn = store.lock();
        conn.execute_batch(
            "UPDATE events SET created_at = '2024-01-01T00:00:01.000Z' WHERE id = 'e1';
             UPDATE events SET created_at = '2024-01-01T00:00:02.000Z' WHERE id = 'e2';",
        )
        .unwrap();
    }
    assert_eq!(
        ids(&store.all_cameras().unwrap()),
        [
            ("e1", "b", 0),
            ("e1", "a", 1),
            ("e2", "y", 0),
            ("e2", "x", 1)
        ]
    );
}

#[test]
fn delete_camera_closes_the_gap_and_clears_active() {
    let store = Store::open_in_memory().unwrap();
    store.create_event("e1", "Final").unwrap();
    store.add_camera("e1", "a", "A", KEY_A).unwrap();
    store.add_camera("e1", "b", "B", KEY_B).unwrap();
    store.add_camera("e1", "c", "C", KEY_C).unwrap();
    store.set_active("e1", Some("c")).unwrap();

    store.delete_camera("e1", "a").unwrap();
    assert_eq!(
        ids(&store.cameras("e1").unwrap()),
        [("e1", "b", 0), ("e1", "c", 1)]
    );
    assert_eq!(
        store.event("e1").unwrap().active_camera.as_deref(),
        Some("c")
    );

    store.delete_camera("e1", "c").unwrap();
    assert_eq!(store.event("e1").unwrap().active_camera, None);
    let d = store.add_camera("e1", "d", "D", KEY_A).unwrap();
    assert_eq!(
        d.position, 1,
        "appended after the remaining camera; key reusable"
    );

    match store.delete_camera("e1", "c") {
        Err(StoreError::NotFound(what)) => assert_eq!(what, "camera c in event e1"),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[test]
fn set_key_round_trip_and_conflicts() {
    let store = Store::open_in_memory().unwrap();
    store.create_event("e1", "Final").unwrap();
    store.create_event("e2", "Semi").unwrap();
    store.add_camera("e1", "a", "A", KEY_A).unwrap();
    store.add_camera("e2", "c", "C", KEY_C).unwrap();

    store.set_key("e1", "a", KEY_B).unwrap();
    assert_eq!(store.cameras("e1").unwrap()[0].stream_key, KEY_B);
    store.set_key("e1", "a", KEY_B).unwrap(); // its own key again is fine

    let error = store.set_key("e1", "a", KEY_C).unwrap_err();
    assert!(matches!(error, StoreError::Conflict(_)));
    assert_eq!(error.to_string(), "stream key already exists");
    assert_eq!(store.cameras("e1").unwrap()[0].stream_key, KEY_B);

    assert!(matches!(
        store.set_key("e1", "zz", "key-new-00000"),
        Err(StoreError::NotFound(_))
    ));
    // The old key is free again.
    store.add_camera("e2", "d", "D", KEY_A).unwrap();
}

#[test]
fn switch_log_order_and_round_trip() {
    let store = Store::open_in_memory().unwrap();
    store.create_event("e1", "Final").unwrap();
    store.create_event("e2", "Semi").unwrap();
    let log = vec![
        switch("2024-05-01T10:00:00.000Z", None, "a", "operator"),
        switch("2024-05-01T10:00:05.250Z", Some("a"), "b", "auto"),
        // Logged order wins over timestamps (a clock step back must not reorder history).
        switch("2024-05-01T09:59:59.999Z", Some("b"), "a", "failover"),
    ];
    for row in &log {
        store.log_switch("e1", row).unwrap();
    }
    store
        .log_switch(
            "e2",
            &switch("2024-05-01T10:00:01.000Z", None, "x", "operator"),
        )
        .unwrap();
    assert_eq!(store.switches("e1").unwrap(), log);
    assert_eq!(store.switches("e2").unwrap().len(), 1);
    assert!(matches!(
        store.log_switch("e1", &switch("t", None, "a", "whim")),
        Err(StoreError::Sqlite(_))
    ));
    assert_eq!(store.switches("e1").unwrap(), log);
}

#[test]
fn state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let log = vec![
        switch("2024-05-01T10:00:00.000Z", None, "b", "operator"),
        switch("2024-05-01T10:00:05.250Z", Some("b"), "c", "failover"),
    ];
    let store = Store::open(&path).unwrap();
    store
        .seed_event(
            "e1",
            "Final",
            &cams(&[("b", "B", KEY_B), ("a", "A", KEY_A)]),
        )
        .unwrap();
    store.add_camera("e1", "c", "C", KEY_C).unwrap();
    store.set_status("e1", "paused").unwrap();
    store.set_active("e1", Some("c")).unwrap();
    for row in &log {
        store.log_switch("e1", row).unwrap();
    }
    let before = (store.event("e1").unwrap(), store.cameras("e1").unwrap());
    drop(store);

    let store = Store::open(&path).unwrap();
    let event = store.event("e1").unwrap();
    assert_eq!(event.status, "paused");
    assert_eq!(event.active_camera.as_deref(), Some("c"));
    assert_eq!(
        ids(&store.cameras("e1").unwrap()),
        [("e1", "b", 0), ("e1", "a", 1), ("e1", "c", 2)]
    );
    assert_eq!((event, store.cameras("e1").unwrap()), before);
    assert_eq!(store.switches("e1").unwrap(), log);
}

#[test]
fn debug_output_redacts_keys() {
    let store = Store::open_in_memory().unwrap();
    store.create_event("e1", "Final").unwrap();
    let row = store
        .add_camera("e1", "a", "Wide", "s3cr3t-key-value")
        .unwrap();
    let debug = format!("{row:?}");
    assert!(!debug.contains("s3cr3t-key-value"), "{debug}");
    assert!(debug.contains("stream_key: \"s3cr…\""), "{debug}");
    assert!(
        debug.contains("id: \"a\"") && debug.contains("position: 0"),
        "{debug}"
    );
    let short = CameraRow {
        stream_key: "abc".into(),
        ..row
    };
    assert!(format!("{short:?}").contains("stream_key: \"…\""));
    assert_eq!(format!("{store:?}"), "Store { path: \":memory:\" }");
}

#[test]
fn a_poisoned_lock_does_not_break_the_store() {
    let store = std::sync::Arc::new(Store::open_in_memory().unwrap());
    let inner = store.clone();
    let _ = std::thread::spawn(move || {
        let conn = inner.lock();
        let _tx = conn.unchecked_transaction().unwrap();
        conn.execute(
            "INSERT INTO events (id, name, created_at) VALUES ('ghost', 'G', 'now')",
            [],
        )
        .unwrap();
        panic!("while holding the lock, mid-transaction");
    })
    .join();
    assert!(store.conn.is_poisoned());
    assert!(
        store.events().unwrap().is_empty(),
        "the transaction rolled back"
    );
    store.create_event("e1", "Final").unwrap();
}

const DEST_KEY: &str = "yt-secret-key-0001";

#[test]
fn destinations_are_added_listed_toggled_and_deleted() {
    let store = Store::open_in_memory().unwrap();
    store.create_event("e1", "Final").unwrap();
    store.create_event("e2", "Other").unwrap();
    let yt = store
        .add_destination(
            "e1",
            "YouTube",
            "rtmp://a.rtmp.youtube.com/live2",
            DEST_KEY,
            "program",
        )
        .unwrap();
    assert!(yt.enabled);
    assert_eq!(
        (yt.event.as_str(), yt.name.as_str(), yt.source.as_str()),
        ("e1", "YouTube", "program")
    );
    let twitch = store
        .add_destination("e1", "Twitch", "rtmp://live.twitch.tv/app", "live_1", "a")
        .unwrap();
    let other = store
        .add_destination("e2", "YouTube", "rtmp://h/live", "k", "program")
        .unwrap();
    assert!(yt.id < twitch.id && twitch.id < other.id);

    // Names are unique within an event only.
    assert!(matches!(
        store.add_destination("e1", "YouTube", "rtmp://h/live", "k2", "program"),
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.add_destination("nope", "X", "rtmp://h/live", "k", "program"),
        Err(StoreError::NotFound(_))
    ));

    assert_eq!(
        store.destinations("e1").unwrap(),
        vec![yt.clone(), twitch.clone()]
    );
    assert_eq!(store.all_destinations().unwrap().len(), 3);
    assert!(matches!(
        store.destinations("nope"),
        Err(StoreError::NotFound(_))
    ));

    let disabled = store.set_destination_enabled("e1", yt.id, false).unwrap();
    assert!(!disabled.enabled);
    assert!(!store.destinations("e1").unwrap()[0].enabled);
    // Another event's id is not found through this event.
    assert!(matches!(
        store.set_destination_enabled("e2", yt.id, true),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.delete_destination("e2", twitch.id),
        Err(StoreError::NotFound(_))
    ));
    store.delete_destination("e1", twitch.id).unwrap();
    assert!(matches!(
        store.delete_destination("e1", twitch.id),
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.destinations("e1").unwrap(), vec![disabled]);

    // Deleting the event deletes its destinations.
    store.delete_event("e1").unwrap();
    assert_eq!(store.all_destinations().unwrap(), vec![other]);
}

#[test]
fn destinations_and_their_disabled_state_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = Store::open(&path).unwrap();
    store.create_event("e1", "Final").unwrap();
    let row = store
        .add_destination("e1", "YouTube", "rtmps://h/live2", DEST_KEY, "program")
        .unwrap();
    store.set_destination_enabled("e1", row.id, false).unwrap();
    drop(store);
    let store = Store::open(&path).unwrap();
    let rows = store.all_destinations().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].stream_key, DEST_KEY);
    assert!(!rows[0].enabled);
}

#[test]
fn a_version_1_database_migrates_to_destinations_keeping_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO events (id, name, created_at) VALUES ('e1', 'Old', '2024-01-01T00:00:00.000Z')",
            [],
        )
        .unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), 2);
    assert_eq!(store.events().unwrap()[0].name, "Old");
    assert!(store.all_destinations().unwrap().is_empty());
    store
        .add_destination("e1", "YouTube", "rtmp://h/live", DEST_KEY, "program")
        .unwrap();
}

#[test]
fn destination_debug_redacts_the_key() {
    let store = Store::open_in_memory().unwrap();
    store.create_event("e1", "Final").unwrap();
    let row = store
        .add_destination("e1", "YouTube", "rtmp://h/live", DEST_KEY, "program")
        .unwrap();
    let shown = format!("{row:?}");
    assert!(!shown.contains(DEST_KEY), "{shown}");
    assert!(shown.contains("\"yt-s…\""), "{shown}");
}
