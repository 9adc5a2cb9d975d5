//! The harness itself: a local registry on loopback, and an image built here pushed to it.

use std::process::Command;

use crate::util::compose::Labelled;
use crate::util::{LocalRegistry, RegistryAuth, Scratch, TestImage, run};

#[test]
fn pushes_a_locally_built_image_to_a_local_registry_with_basic_auth() {
    let scratch = Scratch::new("harness-push");
    // The image pulled back by digest carries the build's label; removed also on a failure.
    let _cleanup = Labelled(scratch.id.clone());
    let registry = LocalRegistry::start(
        &scratch,
        RegistryAuth::Basic {
            user: "lookout".into(),
            password: "test-password".into(),
        },
    );
    let tag = registry.image("harness/app:1.0.0");
    let image = TestImage::build(&scratch, &tag, "1.0.0", "");
    let digest = image.push(&tag);
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    assert_eq!(
        registry.count("PUT", "/v2/harness/app/manifests/1.0.0"),
        1,
        "{:#?}",
        registry.access_log()
    );
    // The registry serves the manifest under the digest Docker recorded.
    run(Command::new("docker").args(["rmi", &tag]));
    let by_digest = format!("{}/harness/app@{digest}", registry.host);
    run(Command::new("docker").args(["pull", "-q", &by_digest]));
    run(Command::new("docker").args(["rmi", &by_digest]));
}
