use super::*;

fn change(key: &str, value: &str) -> Change {
    (key.to_string(), Some(vec![value.to_string()]))
}

fn clear(key: &str) -> Change {
    (key.to_string(), None)
}

fn tracer(dir: &tempfile::TempDir) -> Tracer {
    Tracer::new(TraceSettings {
        file: dir.path().join("trace.json").display().to_string(),
        ..TraceSettings::default()
    })
}

/// A tracer that traces every request, with `more` settings.
fn tracing_all(dir: &tempfile::TempDir, more: &[(&str, &str)]) -> Tracer {
    let t = tracer(dir);
    let mut changes = vec![
        change("trace_level", "TIMESTAMPS"),
        change("trace_rate", "1"),
    ];
    changes.extend(more.iter().map(|(k, v)| change(k, v)));
    t.update(None, changes).unwrap();
    t
}

/// Which of `n` requests to `model` are picked.
fn picked(tracer: &Tracer, model: &str, n: usize) -> Vec<usize> {
    (1..=n)
        .filter(|_| tracer.sample(model, Instant::now()).is_some())
        .collect::<Vec<_>>()
}

fn read(path: std::path::PathBuf) -> Vec<Value> {
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn nothing_is_traced_until_a_level_is_set_then_one_in_rate_until_count_runs_out() {
    let dir = tempfile::tempdir().unwrap();
    let t = tracer(&dir);
    assert!(picked(&t, "m", 2000).is_empty());
    t.update(
        None,
        vec![
            change("trace_level", "TIMESTAMPS"),
            change("trace_rate", "3"),
        ],
    )
    .unwrap();
    assert_eq!(picked(&t, "m", 9).len(), 3);
    let s = t.update(None, vec![change("trace_count", "2")]).unwrap();
    assert_eq!((s.rate, s.count), (3, 2));
    assert_eq!(picked(&t, "m", 30).len(), 2);
    assert_eq!(
        t.settings(None).count,
        0,
        "the count left is what the extension answers"
    );
}

#[test]
fn a_model_with_settings_of_its_own_counts_apart_and_follows_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let t = tracer(&dir);
    t.update(
        Some("a"),
        vec![
            change("trace_level", "TIMESTAMPS"),
            change("trace_rate", "1"),
        ],
    )
    .unwrap();
    assert_eq!(picked(&t, "a", 5).len(), 5);
    assert!(
        picked(&t, "b", 5).is_empty(),
        "b follows the server, which is off"
    );
    // A server-wide change reaches what `a` did not set itself; a count `a` set keeps
    // counting down where it is.
    t.update(Some("a"), vec![change("trace_count", "3")])
        .unwrap();
    assert_eq!(picked(&t, "a", 1).len(), 1);
    t.update(
        None,
        vec![change("log_frequency", "7"), change("trace_count", "9")],
    )
    .unwrap();
    assert_eq!(t.settings(Some("a")).count, 2);
    t.update(Some("a"), vec![clear("trace_count")]).unwrap();
    assert_eq!(
        t.settings(Some("a")).count,
        9,
        "cleared, it follows the server's"
    );
    let a = t.settings(Some("a"));
    assert_eq!((a.log_frequency, a.rate, a.timestamps), (7, 1, true));
    // Clearing one of a's settings takes the server's; an empty change clears them all.
    assert_eq!(
        t.update(Some("a"), vec![clear("trace_rate")]).unwrap().rate,
        1000
    );
    t.update(Some("a"), vec![]).unwrap();
    assert_eq!(t.settings(Some("a")), t.settings(None));
    assert!(picked(&t, "a", 5).is_empty());
}

#[test]
fn a_refused_change_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let t = tracer(&dir);
    let before = t.settings(None);
    let e = t
        .update(
            None,
            vec![change("trace_rate", "5"), change("trace_rate", "zero")],
        )
        .unwrap_err();
    assert!(e.to_string().contains("`trace_rate`"), "{e}");
    assert_eq!(t.settings(None), before);
    let untraced = Tracer::new(TraceSettings::default());
    let e = untraced
        .update(None, vec![change("trace_level", "TIMESTAMPS")])
        .unwrap_err();
    assert!(e.to_string().contains("--trace-file"), "{e}");
}

#[test]
fn traces_are_written_every_log_frequency_and_the_rest_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let t = tracing_all(&dir, &[("log_frequency", "2")]);
    for _ in 0..3 {
        let sampled = t.sample("m", Instant::now()).unwrap();
        t.finish(sampled, "m", 4);
    }
    let first = read(dir.path().join("trace.json.0"));
    assert_eq!(first.len(), 2);
    assert!(!dir.path().join("trace.json.1").exists());
    t.flush();
    let rest = read(dir.path().join("trace.json.1"));
    assert_eq!(rest.len(), 1);
    let ids: Vec<u64> = first
        .iter()
        .chain(&rest)
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2, 3]);
    assert_eq!(rest[0]["model_name"], "m");
    assert_eq!(rest[0]["model_version"], 4);
}

#[test]
fn a_request_that_never_reached_a_model_has_its_start_and_end_only() {
    let dir = tempfile::tempdir().unwrap();
    let t = tracing_all(&dir, &[]);
    let sampled = t.sample("m", Instant::now()).unwrap();
    t.finish(sampled, "m", 1);
    t.flush();
    let traces = read(dir.path().join("trace.json"));
    let names: Vec<&str> = traces[0]["timestamps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["REQUEST_START", "REQUEST_END"]);
    let ns = |i: usize| traces[0]["timestamps"][i]["ns"].as_u64().unwrap();
    assert!(ns(0) <= ns(1));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    assert!(
        now - ns(1) < 60_000_000_000,
        "nanoseconds since the Unix epoch"
    );
}

#[test]
fn traces_kept_unwritten_are_bounded_and_taking_resumes_once_written() {
    let dir = tempfile::tempdir().unwrap();
    let t = tracing_all(&dir, &[]); // log_frequency 0: kept until the end
    for _ in 0..MAX_KEPT {
        let sampled = t.sample("m", Instant::now()).unwrap();
        t.finish(sampled, "m", 1);
    }
    assert!(t.sample("m", Instant::now()).is_none(), "over the bound");
    t.flush();
    assert_eq!(read(dir.path().join("trace.json")).len(), MAX_KEPT);
    assert!(
        t.sample("m", Instant::now()).is_some(),
        "written: taken again"
    );
}
