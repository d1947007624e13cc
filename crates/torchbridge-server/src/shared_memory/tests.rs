use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

/// A real POSIX shared-memory object, removed when dropped.
pub(crate) struct Object {
    pub key: String,
}

impl Object {
    pub fn new(contents: &[u8]) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let key = format!("/torchbridge-test-{}-{n}", std::process::id());
        std::fs::write(object_path(&key).unwrap(), contents).unwrap();
        Object { key }
    }

    pub fn contents(&self) -> Vec<u8> {
        std::fs::read(object_path(&self.key).unwrap()).unwrap()
    }
}

impl Drop for Object {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(object_path(&self.key).unwrap());
    }
}

fn at(region: &str, offset: u64, byte_size: u64) -> Placement {
    Placement {
        region: region.into(),
        offset,
        byte_size,
        bound: None,
    }
}

fn message(result: Result<impl std::fmt::Debug>) -> String {
    result.unwrap_err().to_string()
}

#[test]
fn reads_and_writes_inside_the_registered_span() {
    let object = Object::new(&(0..32).collect::<Vec<u8>>());
    let shm = SharedMemory::new(true);
    // The region starts 8 bytes into the object.
    shm.register("r", &object.key, 8, 16).unwrap();
    assert_eq!(
        &shm.read("x", &at("r", 4, 4)).unwrap()[..],
        &[12, 13, 14, 15]
    );
    shm.write("y", &at("r", 0, 4), &[0xAA, 0xBB]).unwrap();
    let contents = object.contents();
    assert_eq!(&contents[6..12], &[6, 7, 0xAA, 0xBB, 10, 11]);
}

#[test]
fn refuses_spans_past_the_region_and_outputs_past_their_span() {
    let object = Object::new(&[0; 32]);
    let shm = SharedMemory::new(true);
    shm.register("r", &object.key, 8, 16).unwrap();
    let past = message(shm.read("x", &at("r", 12, 8)));
    assert!(
        past.contains("past the end of shared-memory region `r` (16 bytes)"),
        "{past}"
    );
    assert!(message(shm.read("x", &at("r", u64::MAX, 2))).contains("past the end"));
    let too_big = message(shm.write("y", &at("r", 0, 4), &[1; 5]));
    assert!(
        too_big.contains("output `y` is 5 bytes, more than the 4 bytes"),
        "{too_big}"
    );
    assert_eq!(object.contents(), vec![0; 32], "nothing was written");
}

#[test]
fn a_shrunk_object_is_an_error_not_a_crash() {
    let object = Object::new(&[7; 64]);
    let shm = SharedMemory::new(true);
    shm.register("r", &object.key, 0, 64).unwrap();
    std::fs::write(object_path(&object.key).unwrap(), [7; 8]).unwrap();
    let error = message(shm.read("x", &at("r", 0, 32)));
    assert!(error.contains("shorter than it was registered"), "{error}");
}

#[test]
fn registration_checks_the_name_the_key_and_the_size() {
    let object = Object::new(&[0; 16]);
    let shm = SharedMemory::new(true);
    let short = message(shm.register("r", &object.key, 8, 16));
    assert!(
        short.contains("holds 16 bytes, fewer than offset 8 + byte_size 16"),
        "{short}"
    );
    for key in ["/../etc/passwd", "/a/b", "/", "", "/.."] {
        let bad = message(shm.register("r", key, 0, 1));
        assert!(bad.contains("is not a shared-memory key"), "{key}: {bad}");
    }
    let missing = message(shm.register("r", "/torchbridge-no-such-object", 0, 1));
    assert!(
        missing.contains("cannot open shared-memory object"),
        "{missing}"
    );
    shm.register("r", &object.key, 0, 16).unwrap();
    let twice = message(shm.register("r", &object.key, 0, 8));
    assert!(twice.contains("`r` is already registered"), "{twice}");
    assert!(message(shm.register("", &object.key, 0, 8)).contains("needs a name"));
}

#[test]
fn status_and_unregister() {
    let object = Object::new(&[0; 16]);
    let shm = SharedMemory::new(true);
    shm.register("b", &object.key, 0, 16).unwrap();
    shm.register("a", &object.key, 4, 8).unwrap();
    let names: Vec<_> = shm
        .status(None)
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["a", "b"]);
    let a = shm.status(Some("a")).unwrap();
    assert_eq!(
        a,
        [RegionStatus {
            name: "a".into(),
            key: object.key.clone(),
            offset: 4,
            byte_size: 8
        }]
    );
    shm.unregister(Some("a"));
    shm.unregister(Some("never registered"));
    assert!(message(shm.status(Some("a"))).contains("no shared-memory region `a`"));
    assert!(message(shm.read("x", &at("a", 0, 1))).contains("no shared-memory region `a`"));
    shm.unregister(None);
    assert!(shm.status(None).unwrap().is_empty());
}

#[test]
fn regions_are_bounded_in_number() {
    let object = Object::new(&[0; 16]);
    let shm = SharedMemory::new(true);
    for i in 0..MAX_REGIONS {
        shm.register(&format!("r{i}"), &object.key, 0, 16).unwrap();
    }
    let full = message(shm.register("one more", &object.key, 0, 16));
    assert!(
        full.contains("region `one more`")
            && full.contains(&format!("{MAX_REGIONS} shared-memory regions")),
        "{full}"
    );
    shm.unregister(Some("r0"));
    shm.register("one more", &object.key, 0, 16).unwrap();
    assert_eq!(shm.status(None).unwrap().len(), MAX_REGIONS);
}

#[test]
fn off_unless_allowed() {
    let object = Object::new(&[0; 16]);
    let shm = SharedMemory::new(false);
    let off = message(shm.register("r", &object.key, 0, 16));
    assert!(off.contains("--allow-client-shm"), "{off}");
    assert!(message(shm.read("x", &at("r", 0, 1))).contains("--allow-client-shm"));
}

#[test]
fn a_symlink_or_a_directory_in_the_shared_memory_directory_is_not_a_region() {
    let outside = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(outside.path(), [7u8; 16]).unwrap();
    let link = format!("/torchbridge-test-link-{}", std::process::id());
    let link_path = object_path(&link).unwrap();
    std::os::unix::fs::symlink(outside.path(), &link_path).unwrap();
    let dir = format!("/torchbridge-test-dir-{}", std::process::id());
    let dir_path = object_path(&dir).unwrap();
    std::fs::create_dir(&dir_path).unwrap();
    let shm = SharedMemory::new(true);
    let through_link = message(shm.register("r", &link, 0, 16));
    let a_dir = message(shm.register("d", &dir, 0, 0));
    std::fs::remove_file(&link_path).unwrap();
    std::fs::remove_dir(&dir_path).unwrap();
    assert!(
        through_link.contains("cannot open shared-memory object"),
        "{through_link}"
    );
    assert!(
        a_dir.contains("cannot open") || a_dir.contains("not a regular file"),
        "{a_dir}"
    );
}

#[test]
fn an_output_goes_to_the_region_its_request_named_when_accepted() {
    // A second client unregisters `out` and registers its own object under the name
    // while the first client's request runs: the reply still goes to the first.
    let (first, second) = (Object::new(&[0; 8]), Object::new(&[0; 8]));
    let shm = SharedMemory::new(true);
    shm.register("out", &first.key, 0, 8).unwrap();
    let mut placed = at("out", 0, 4);
    shm.bind("y", &mut placed).unwrap();
    shm.unregister(Some("out"));
    shm.register("out", &second.key, 0, 8).unwrap();
    shm.write("y", &placed, &[1, 2, 3, 4]).unwrap();
    assert_eq!(first.contents(), [1, 2, 3, 4, 0, 0, 0, 0]);
    assert_eq!(
        second.contents(),
        [0; 8],
        "the other client's object is untouched"
    );

    // A region that is not registered fails the request before the model runs.
    let err = message(shm.bind("y", &mut at("nope", 0, 4)));
    assert!(err.contains("no shared-memory region `nope`"), "{err}");
}
