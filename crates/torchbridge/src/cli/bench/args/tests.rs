use super::*;

#[test]
fn durations_and_addresses() {
    assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
    assert!(
        parse_duration("fast")
            .unwrap_err()
            .contains("not a duration")
    );
    assert!(
        parse_duration("3d")
            .unwrap_err()
            .contains("unknown unit `d`")
    );
    assert_eq!(
        address("127.0.0.1:9000", 8000, "--url").unwrap(),
        "127.0.0.1:9000"
    );
    assert_eq!(
        address("http://localhost/", 8000, "--url").unwrap(),
        "localhost:8000"
    );
    assert_eq!(address("[::1]:7", 8000, "--url").unwrap(), "[::1]:7");
    assert_eq!(address("[::1]", 8001, "--url").unwrap(), "[::1]:8001");
    assert!(address("https://x:1", 8000, "--url").is_err());
    assert!(address("x:1/v2", 8000, "--url").is_err());
    assert_eq!(host("[::1]:8000"), "[::1]");
}
