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

#[derive(clap::Parser)]
struct Cli {
    #[command(flatten)]
    args: BenchArgs,
}

fn plan(line: &str) -> anyhow::Result<Plan> {
    use clap::Parser;
    let cli = Cli::try_parse_from(std::iter::once("bench").chain(line.split_whitespace()))?;
    Plan::try_from(cli.args)
}

#[test]
fn open_loop_rates_are_checked() {
    let p = plan("--model m --rate 100,2500.5 --max-in-flight 8").unwrap();
    assert_eq!(p.rates, vec![100.0, 2500.5]);
    assert_eq!(p.max_in_flight, 8);
    assert!(plan("--model m").unwrap().rates.is_empty());
    for bad in ["--rate 0", "--rate=-5", "--rate inf"] {
        let err = plan(&format!("--model m {bad}")).unwrap_err().to_string();
        assert!(err.contains("--rate must be"), "{bad}: {err}");
    }
    let err = plan("--bridges onnx --rate 5").unwrap_err().to_string();
    assert!(err.contains("--rate drives a server"), "{err}");
    let err = plan("--model m --max-in-flight 0").unwrap_err().to_string();
    assert!(err.contains("--max-in-flight"), "{err}");
}

#[test]
fn headers_are_read_and_checked() {
    let h = headers(&["x-team: search".into(), "X-Team:  ranking ".into()], None).unwrap();
    let teams: Vec<_> = h.get_all("x-team").iter().collect();
    assert_eq!(teams, ["search", "ranking"]);
    for (bad, says) in [
        ("no colon", "write it as \"NAME: VALUE\""),
        ("bad name: v", "`bad name` is not a header name"),
        ("x: line\nbreak", "the value is not a header value"),
    ] {
        let e = format!("{:#}", headers(&[bad.into()], None).unwrap_err());
        assert!(e.contains(says), "{bad}: {e}");
    }
    let e = headers(&[], Some("TORCHBRIDGE_BENCH_TEST_UNSET_VAR"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`TORCHBRIDGE_BENCH_TEST_UNSET_VAR` is not set"),
        "{e}"
    );
}

#[test]
fn flags_that_would_be_ignored_are_refused() {
    let err = plan("--model m --rate 5 --concurrency 4")
        .unwrap_err()
        .to_string();
    assert!(err.contains("--concurrency"), "{err}");
    let err = plan("--model m --plot /no/such/dir/out.svg")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("the directory it would go in does not exist"),
        "{err}"
    );
    assert!(plan("--model m --plot out.svg").is_ok());
}
