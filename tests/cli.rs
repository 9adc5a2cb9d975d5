//! The `lookout` binary as an operator runs it: tag selection and configuration validation.

use crate::util::{Scratch, fixture, lookout};

fn output(args: &[&str]) -> (i32, String, String) {
    let out = lookout().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn tags_from_file_prints_the_choice_as_json() {
    let file = fixture("tags/nginx.tsv");
    let (code, stdout, stderr) = output(&[
        "tags",
        "--from-file",
        file.to_str().unwrap(),
        "--current",
        "1.25.3-alpine",
        "--policy",
        "semver",
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["current"], "1.25.3-alpine");
    assert_eq!(v["selected"], "1.31.4-alpine");
    assert_eq!(v["policy"], "semver");
    assert!(v["candidates"].as_u64().unwrap() > 50, "{v}");
    // Without policy options the digest policy stays on the tag.
    let (_, stdout, _) = output(&[
        "tags",
        "--from-file",
        file.to_str().unwrap(),
        "--current",
        "1.25.3-alpine",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(
        (v["policy"].as_str(), v["selected"].as_str()),
        (Some("digest"), Some("1.25.3-alpine"))
    );
}

#[test]
fn tags_from_file_explains_in_text() {
    let scratch = Scratch::new("cli-tags-text");
    let list = scratch.write(
        "tags.tsv",
        "# tag\tpushed\nstaging-aaa\t100\nstaging-bbb\t300\nstaging-ccc\t200\n",
    );
    let (code, stdout, _) = output(&[
        "tags",
        "--from-file",
        list.to_str().unwrap(),
        "--current",
        "staging-aaa",
        "--tag-pattern",
        "staging-*",
    ]);
    assert_eq!(code, 0);
    assert!(stdout.contains("selected:   staging-bbb"), "{stdout}");
    assert!(stdout.contains("policy:     glob"), "{stdout}");
    let (_, stdout, _) = output(&[
        "tags",
        "--from-file",
        list.to_str().unwrap(),
        "--current",
        "staging-bbb",
        "--tag-pattern",
        "staging-*",
        "--json",
    ]);
    assert!(stdout.contains("\"selected\":null"), "{stdout}");
}

#[test]
fn tags_rejects_bad_flags_and_files_clearly() {
    let scratch = Scratch::new("cli-tags-bad");
    let list = scratch.write("tags.tsv", "1.0\tyesterday\n");
    let (code, _, stderr) = output(&[
        "tags",
        "--from-file",
        list.to_str().unwrap(),
        "--current",
        "1.0",
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("tags.tsv") && stderr.contains("line 1") && stderr.contains("yesterday"),
        "{stderr}"
    );
    let (code, _, stderr) = output(&[
        "tags",
        "--from-file",
        list.to_str().unwrap(),
        "--current",
        "1.0",
        "--tag-regex",
        "(",
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--tag-regex"), "{stderr}");
    let (code, _, stderr) = output(&[
        "tags",
        "--from-file",
        "x",
        "--current",
        "1",
        "--update-level",
        "huge",
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("major, minor, patch"), "{stderr}");
}

#[test]
fn config_validate_accepts_the_shipped_and_seed_configurations() {
    for file in [
        fixture("../../config/lookout.toml"),
        fixture("config/updater_config.json"),
    ] {
        let (code, stdout, stderr) = output(&["config", "validate", file.to_str().unwrap()]);
        assert_eq!(code, 0, "{}: {stderr}", file.display());
        assert!(stdout.contains("valid"), "{stdout}");
    }
}

#[test]
fn config_validate_lists_every_problem_and_fails() {
    let scratch = Scratch::new("cli-config-bad");
    let file = scratch.write(
        "bad.json",
        r#"{"services": [{"name": "a", "image": "nginx", "compose_file": "/c.yml", "registry_type": "dockerhub", "tag_patern": "x"}]}"#,
    );
    let (code, _, stderr) = output(&["config", "validate", file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(
            "services[0].registry_type: \"dockerhub\" is not one of docker_hub, ecr, gcr, oci"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("services[0].tag_patern: unknown key"),
        "{stderr}"
    );
    assert!(stderr.contains(file.to_str().unwrap()), "{stderr}");
}

#[test]
fn compose_set_image_prints_the_diff_then_writes() {
    let scratch = Scratch::new("cli-compose-set-image");
    let original =
        "services:\n  web:\n    image: \"nginx:1.25\"  # pinned by ops\n  db:\n    build: ./db\n";
    let file = scratch.write("compose.yaml", original);
    let f = file.to_str().unwrap();
    let (code, stdout, stderr) = output(&[
        "compose",
        "set-image",
        "--file",
        f,
        "--service",
        "web",
        "--image",
        "nginx:1.27",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("-    image: \"nginx:1.25\"  # pinned by ops")
            && stdout.contains("+    image: \"nginx:1.27\"  # pinned by ops"),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        original,
        "without --write nothing changes"
    );

    let (code, _, stderr) = output(&[
        "compose",
        "set-image",
        "--file",
        f,
        "--service",
        "web",
        "--image",
        "nginx:1.27",
        "--write",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        original.replace("1.25", "1.27")
    );

    let (code, _, stderr) = output(&[
        "compose",
        "set-image",
        "--file",
        f,
        "--service",
        "api",
        "--image",
        "x:1",
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("api") && stderr.contains("web") && stderr.contains("db"),
        "unknown service lists the known ones: {stderr}"
    );
    let (code, _, stderr) = output(&[
        "compose",
        "set-image",
        "--file",
        f,
        "--service",
        "db",
        "--image",
        "x:1",
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("build"), "{stderr}");
    let broken = scratch.write("broken.yaml", "services:\n  web:\n    image: [unclosed\n");
    let (code, _, stderr) = output(&[
        "compose",
        "set-image",
        "--file",
        broken.to_str().unwrap(),
        "--service",
        "web",
        "--image",
        "x:1",
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("broken.yaml") && stderr.contains("line"),
        "{stderr}"
    );
}

/// A configuration without services whose state file is in `scratch`.
fn empty_config(scratch: &Scratch) -> std::path::PathBuf {
    scratch.write(
        "lookout.toml",
        format!(
            "state_file = \"{}\"\n",
            scratch.join("state/state.json").display()
        ),
    )
}

#[test]
fn exit_code_4_when_docker_does_not_answer() {
    let scratch = Scratch::new("cli-exit-no-docker");
    let config = empty_config(&scratch);
    let socket = format!("unix://{}", scratch.join("no-docker.sock").display());
    for args in [&["update"][..], &["rollback", "web"]] {
        let out = lookout()
            .args(args)
            .arg("--config")
            .arg(&config)
            .env("DOCKER_HOST", &socket)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{args:?}: {stderr}");
        assert!(
            stderr.contains("no-docker.sock"),
            "names the host: {stderr}"
        );
    }
}

#[test]
fn exit_code_4_when_another_lookout_holds_the_state_lock() {
    let scratch = Scratch::new("cli-exit-locked");
    let config = empty_config(&scratch);
    std::fs::create_dir_all(scratch.join("state")).unwrap();
    let lock = scratch.join("state/state.json.lock");
    // util-linux flock(1) holds the same advisory lock a running lookout holds.
    let mut holder = std::process::Command::new("flock")
        .arg(&lock)
        .args(["sleep", "30"])
        .spawn()
        .expect("flock(1) from util-linux is needed by this test");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let out = loop {
        let out = lookout()
            .args(["update", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if stderr.contains("held by") || std::time::Instant::now() > deadline {
            break (out.status.code(), stderr);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(out.0, Some(4), "{}", out.1);
    assert!(out.1.contains("state.json.lock"), "{}", out.1);
}

#[test]
fn exit_code_2_for_a_service_not_in_the_configuration() {
    let scratch = Scratch::new("cli-exit-unknown");
    let config = empty_config(&scratch);
    for args in [&["update", "nope"][..], &["rollback", "nope"]] {
        let out = lookout()
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("nope"), "{stderr}");
    }
}

#[test]
fn update_logs_with_the_configured_format_and_level() {
    let scratch = Scratch::new("cli-update-log-format");
    let socket = format!("unix://{}", scratch.join("no-docker.sock").display());
    let run = |name: &str, settings: &str| {
        let config = scratch.write(
            name,
            format!(
                "state_file = \"{}\"\n{settings}",
                scratch.join(&format!("{name}.state/state.json")).display()
            ),
        );
        let out = lookout()
            .args(["update", "--config"])
            .arg(&config)
            .env("DOCKER_HOST", &socket)
            .env_remove("LOG_LEVEL")
            .env_remove("LOG_FORMAT")
            .env_remove("LOOKOUT_LOG_LEVEL")
            .env_remove("LOOKOUT_LOG_FORMAT")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(4), "{stderr}");
        stderr
    };

    // A fresh state file is logged at info before Docker is asked; the error after it is printed.
    let stderr = run("json.toml", "log_format = \"json\"\n");
    let lines: Vec<&str> = stderr.lines().collect();
    let logged: Vec<serde_json::Value> = lines
        .iter()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        logged.iter().any(|v| v["level"] == "INFO"
            && v["message"]
                .as_str()
                .is_some_and(|m| m.contains("state file does not exist yet"))),
        "a JSON log line for the fresh state file: {stderr}"
    );
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with('{') || l.starts_with("error: ")),
        "every line is a JSON log line or the error: {stderr}"
    );
    assert!(
        stderr.contains("error: cannot connect to the Docker engine"),
        "{stderr}"
    );

    let stderr = run(
        "error.toml",
        "log_format = \"json\"\nlog_level = \"error\"\n",
    );
    assert!(
        !stderr.contains("state file does not exist yet"),
        "log_level = \"error\" keeps info lines out: {stderr}"
    );
    assert!(
        stderr.contains("error: cannot connect to the Docker engine"),
        "{stderr}"
    );
}
