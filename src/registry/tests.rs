use super::*;

fn digests(manifest: &str, platform: Option<&str>) -> Digests {
    Digests {
        manifest: manifest.into(),
        media_type: "application/vnd.oci.image.index.v1+json".into(),
        platform: platform.map(str::to_owned),
    }
}

#[test]
fn an_index_whose_other_platforms_changed_is_the_same_image_here() {
    let before = digests("sha256:index1", Some("sha256:amd64"));
    let after = digests("sha256:index2", Some("sha256:amd64"));
    assert!(before.same_image(&after));
    assert!(!before.same_image(&digests("sha256:index3", Some("sha256:amd64-new"))));
    // Without a platform digest only the manifest digest can tell.
    assert!(!digests("sha256:a", None).same_image(&digests("sha256:b", None)));
}

#[test]
fn a_local_digest_may_be_the_index_or_the_platform_manifest() {
    let d = digests("sha256:index", Some("sha256:amd64"));
    assert!(d.names("sha256:index"));
    assert!(d.names("sha256:amd64"));
    assert!(!d.names("sha256:arm64"));
}

#[test]
fn platforms_read_and_print_as_docker_writes_them() {
    let p = Platform::parse("linux/arm64/v8").unwrap();
    assert_eq!(p.variant.as_deref(), Some("v8"));
    assert_eq!(p.to_string(), "linux/arm64/v8");
    assert_eq!(
        Platform::parse("linux/amd64").unwrap().to_string(),
        "linux/amd64"
    );
    assert_eq!(Platform::parse("linux"), None);
    assert_eq!(Platform::parse("a/b/c/d"), None);
    assert_eq!(Platform::host().os, std::env::consts::OS);
}
