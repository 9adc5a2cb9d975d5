//! The fuzz targets' checks (`lookout::fuzzing`, one function per target in `fuzz/`) over the
//! committed corpora, and every input a fuzzer once found failing, as a named test.
//!
//! The corpora live in `fuzz/corpus/<target>/`; running them here keeps them meaningful when the
//! parsers change, without a nightly toolchain or `cargo fuzz`.

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use lookout::fuzzing;
use lookout::reference::ImageRef;

/// Runs `check` over every input in `fuzz/corpus/<target>/`, naming the file that fails.
fn corpus(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    for file in &files {
        let data = fs::read(file).unwrap();
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| check(&data))) {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            panic!("{}: {message}", file.display());
        }
    }
}

#[test]
fn reference_corpus() {
    corpus("reference", fuzzing::reference);
}

#[test]
fn tag_policy_corpus() {
    corpus("tag_policy", fuzzing::tag_policy);
}

#[test]
fn compose_edit_corpus() {
    corpus("compose_edit", fuzzing::compose_edit);
}

#[test]
fn env_file_corpus() {
    corpus("env_file", fuzzing::env_file);
}

#[test]
fn config_corpus() {
    corpus("config", fuzzing::config);
}

#[test]
fn www_authenticate_corpus() {
    corpus("www_authenticate", fuzzing::www_authenticate);
}

#[test]
fn link_header_corpus() {
    corpus("link_header", fuzzing::link_header);
}

#[test]
fn hook_payload_corpus() {
    corpus("hook_payload", fuzzing::hook_payload);
}

// Inputs that once failed. The first two are the panics of the hardening issue (#11, point 2),
// reproduced by the seed corpora before any fuzzing.

#[test]
fn token_answer_with_the_largest_expires_in_does_not_panic() {
    fuzzing::www_authenticate(br#"{"token":"t","expires_in":18446744073709551615}"#);
}

#[test]
fn configured_durations_beyond_their_range_are_refused_with_the_range() {
    let text =
        "health_timeout = 18446744073709551615\ncompose_timeout = \"18446744073709551615s\"\n";
    fuzzing::config(text.as_bytes());
    let e = lookout::config::from_text(Path::new("lookout.toml"), text, &|_| None).unwrap_err();
    let message = e.to_string();
    for (field, range) in [
        ("health_timeout", "use 1s to 6h"),
        ("compose_timeout", "use 1s to 1h"),
    ] {
        assert!(
            message.contains(field) && message.contains(range),
            "{message}"
        );
    }
}

#[test]
fn familiar_form_keeps_docker_io_when_the_path_looks_like_a_host() {
    // Found by the `reference` target: the short form read as a reference on host `ler.io`.
    fuzzing::reference(b"docker.io/ler.io/library/giana/grat");
    let r = ImageRef::parse("docker.io/ler.io/library/giana/grat").unwrap();
    assert_eq!(r.familiar(), "docker.io/ler.io/library/giana/grat:latest");
    assert_eq!(
        ImageRef::parse("docker.io/localhost/app:1")
            .unwrap()
            .familiar(),
        "docker.io/localhost/app:1"
    );
}

#[test]
fn familiar_form_keeps_library_before_a_nested_path() {
    // `library/a/b` without `library/` is the repository `a/b`, another namespace.
    fuzzing::reference(b"docker.io/library/a/b:1");
    let r = ImageRef::parse("docker.io/library/a/b:1").unwrap();
    assert_eq!(r.familiar(), "library/a/b:1");
    assert_eq!(
        ImageRef::parse("library/nginx").unwrap().familiar(),
        "nginx:latest"
    );
}

#[test]
fn a_pushed_repository_path_with_a_dot_in_its_first_component_is_a_repository_on_any_registry() {
    // Found by the `hook_payload` target: a distribution notification naming the repository
    // `sssss.sssssssssssstar_coun/t` (a valid path) failed the target's own check, which read the
    // path without a host and so took `sssss.sssssssssssstar_coun` for one. The parser was right;
    // the check now reads a push without a registry against a placeholder host.
    let body = br#"{"events": [{"id": "641356d8", "action": "push", "target": {"mediah": 716, "repository": "sssss.sssssssssssstar_coun/t"}}]}"#;
    let mut input = b"registry\n".to_vec();
    input.extend_from_slice(body);
    fuzzing::hook_payload(&input);
}

#[test]
fn a_compose_file_libyaml_safer_panics_on_is_refused_as_invalid_yaml() {
    // Found by the `compose_edit` target: libyaml-safer 0.3's scanner panics ("TODO: What is
    // expected here?") on this input. The span parser catches the panic and refuses the file.
    let data = include_bytes!("fixtures/fuzz/compose_edit-libyaml-scanner-todo");
    fuzzing::compose_edit(data);
    let text = String::from_utf8_lossy(data);
    let compose = text.split_once('\n').map_or("", |(_, rest)| rest);
    let e = lookout::compose::locate(compose, "web").unwrap_err();
    assert!(
        matches!(e, lookout::compose::ComposeError::InvalidYaml { .. }),
        "{e}"
    );
}

#[test]
fn a_mapping_that_merges_itself_twice_is_searched_once_not_forever() {
    // Found by the `compose_edit` target (one input ran for over 20 minutes): an anchored
    // top-level mapping with two merge keys (`<< :` and `<<  :`) that both name itself. Every
    // lookup of a key it lacks (`services`) followed both merges, 64 deep: 2^64 paths, and
    // locating the image never ended. Each mapping is now searched once per lookup.
    let data = include_bytes!("fixtures/fuzz/compose_edit-self-merge-twice");
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        fuzzing::compose_edit(data);
        let text = String::from_utf8_lossy(data);
        let compose = text
            .split_once('\n')
            .map_or("", |(_, rest)| rest)
            .to_owned();
        let _ = done.send(lookout::compose::locate(&compose, "a").map_err(|e| e.to_string()));
    });
    let located = finished
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("locating a service in a self-merging mapping did not finish within 60 s");
    let e = located.expect_err("the file defines no services");
    assert!(e.contains("services"), "{e}");
}

#[test]
fn an_anchored_empty_image_is_refused_not_edited_in_an_empty_span() {
    // Found by the `compose_edit` target: `image: &nextcloud:apache` is an anchor on an empty
    // value; the locator returned an empty span for it, into which an edit would have
    // inserted the new reference. It is refused, naming the empty `image:`.
    let data = include_bytes!("fixtures/fuzz/compose_edit-anchored-empty-image");
    fuzzing::compose_edit(data);
    let text = String::from_utf8_lossy(data);
    let compose = text.split_once('\n').map_or("", |(_, rest)| rest);
    let e = lookout::compose::locate(compose, "nc").unwrap_err();
    assert!(e.to_string().contains("`image:` is empty"), "{e}");
    let plain = "services:\n  web:\n    image:\n";
    let e = lookout::compose::locate(plain, "web").unwrap_err();
    assert!(e.to_string().contains("`image:` is empty"), "{e}");
}
