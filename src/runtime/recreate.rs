//! The create request of a standalone container's replacement, from the old container's inspect
//! data: what `docker run` set is kept, what the old image set is left to the new image.
//!
//! Pure: [`plan`] reads the old container's inspect answer and its image's config and returns
//! the new container's [`Recreate`]: the create body (`Config`, `HostConfig`, the endpoint of the
//! network it was created on) and the networks to connect it to afterwards, each with its
//! aliases, static addresses, links and MAC address. [`dependents`] orders the containers that
//! must be stopped before and recreated after it.
//!
//! The rules:
//! - Settings the old image had as defaults and the container did not change (`Env` entries,
//!   `Cmd`, `Entrypoint`, `WorkingDir`, `User`, `ExposedPorts`, `Volumes`, `Labels`,
//!   `Healthcheck`, `StopSignal`) are left out, so the engine fills them from the new image;
//!   only what differs from the old image is carried.
//! - Anonymous volumes are mounted by name at the same place, so their data stays; named
//!   volumes, binds and `--mount`s are kept as they were.
//! - What Docker derived from the old container's id (the hostname, the short-id network alias,
//!   the MAC address computed from the IPv4 address) is not carried.
//! - `--rm` (`AutoRemove`) containers are refused: Docker removes them as soon as they stop, so
//!   the old one could not be kept for a rollback.
//! - Everything else of `HostConfig` (ports, restart policy, resources, `--privileged`, devices,
//!   capabilities, log driver, …) is carried as Docker reported it.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::arithmetic_side_effects,
        clippy::indexing_slicing
    )
)]

use std::collections::{BTreeSet, HashMap};

use bollard::models::{
    ContainerConfig, ContainerCreateBody, ContainerInspectResponse, EndpointIpamConfig,
    EndpointSettings, HostConfig, ImageConfig, MountType, NetworkingConfig,
};

/// The label naming the containers a container depends on (comma-separated names): it is
/// stopped before and recreated after any of them is updated.
pub const LABEL_DEPENDS_ON: &str = "lookout.depends_on";
/// Watchtower's label for the same, honoured so that containers set up for it keep working.
pub const LABEL_WATCHTOWER_DEPENDS_ON: &str = "com.centurylinklabs.watchtower.depends-on";

/// What it takes to recreate one container.
#[derive(Debug, Clone, PartialEq)]
pub struct Recreate {
    /// The name the new container gets (the old one's, without Docker's `/`).
    pub name: String,
    /// `POST /containers/create`: config, host config and the first network's endpoint.
    pub body: ContainerCreateBody,
    /// Networks to connect after the create, in name order, with their endpoint settings.
    pub connect: Vec<(String, EndpointSettings)>,
}

/// Why a container cannot be recreated; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecreateError {
    #[error(
        "container {container} was started with --rm (AutoRemove): Docker removes it as soon as \
         it stops, so lookout could not keep it to roll back to; start it without --rm to let \
         lookout update it"
    )]
    AutoRemove { container: String },
    #[error("the inspect data of container {container} has no {part}; cannot recreate it")]
    Incomplete {
        container: String,
        part: &'static str,
    },
}

/// The create request of `old`'s replacement on `new_image` (the reference the new container's
/// `Config.Image` names), given the config of the image `old` was created from.
pub fn plan(
    old: &ContainerInspectResponse,
    old_image: &ImageConfig,
    new_image: &str,
) -> Result<Recreate, RecreateError> {
    let name = container_name(old);
    let incomplete = |part| RecreateError::Incomplete {
        container: name.clone(),
        part,
    };
    let config = old.config.as_ref().ok_or_else(|| incomplete("Config"))?;
    let host = old
        .host_config
        .as_ref()
        .ok_or_else(|| incomplete("HostConfig"))?;
    if host.auto_remove == Some(true) {
        return Err(RecreateError::AutoRemove { container: name });
    }
    let id = old.id.as_deref().unwrap_or_default();
    let network_mode = host.network_mode.clone().unwrap_or_default();
    let mut body = carried_config(config, old_image, id, &network_mode);
    body.image = Some(new_image.to_owned());
    body.host_config = Some(host_config(old, host, config));

    let (first, connect) = endpoints(old, &network_mode, id);
    body.networking_config = first.map(|(network, endpoint)| NetworkingConfig {
        endpoints_config: Some(HashMap::from([(network, endpoint)])),
    });
    Ok(Recreate {
        name,
        body,
        connect,
    })
}

/// The container's name without Docker's leading `/`.
pub fn container_name(inspect: &ContainerInspectResponse) -> String {
    inspect
        .name
        .as_deref()
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_owned()
}

/// The `Config` part of the create body: what the container set beyond its image.
fn carried_config(
    c: &ContainerConfig,
    image: &ImageConfig,
    id: &str,
    network_mode: &str,
) -> ContainerCreateBody {
    let differs = |container: &Option<String>, image: &Option<String>| {
        let value = container.clone().unwrap_or_default();
        (value != image.clone().unwrap_or_default()).then_some(value)
    };
    let image_env: BTreeSet<&String> = image.env.iter().flatten().collect();
    let env: Vec<String> = c
        .env
        .iter()
        .flatten()
        .filter(|e| !image_env.contains(e))
        .cloned()
        .collect();
    let image_labels = image.labels.clone().unwrap_or_default();
    let labels: HashMap<String, String> = c
        .labels
        .iter()
        .flatten()
        .filter(|(k, v)| image_labels.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // A container sharing another's network namespace has that one's hostname, and Docker
    // refuses one of its own.
    let shares_namespace = network_mode.starts_with("container:");
    let hostname = c
        .hostname
        .clone()
        .filter(|h| !h.is_empty() && !shares_namespace && !is_short_id(h, id));
    let domainname = c
        .domainname
        .clone()
        .filter(|d| !d.is_empty() && !shares_namespace);
    ContainerCreateBody {
        hostname,
        domainname,
        user: differs(&c.user, &image.user),
        attach_stdin: c.attach_stdin,
        attach_stdout: c.attach_stdout,
        attach_stderr: c.attach_stderr,
        exposed_ports: only_new(c.exposed_ports.as_ref(), image.exposed_ports.as_ref()),
        tty: c.tty,
        open_stdin: c.open_stdin,
        stdin_once: c.stdin_once,
        env: (!env.is_empty()).then_some(env),
        cmd: (c.cmd != image.cmd).then(|| c.cmd.clone()).flatten(),
        healthcheck: (c.healthcheck != image.healthcheck)
            .then(|| c.healthcheck.clone())
            .flatten(),
        args_escaped: None,
        image: None,
        volumes: only_new(c.volumes.as_ref(), image.volumes.as_ref()),
        working_dir: differs(&c.working_dir, &image.working_dir),
        entrypoint: (c.entrypoint != image.entrypoint)
            .then(|| c.entrypoint.clone())
            .flatten(),
        network_disabled: c.network_disabled.filter(|d| *d),
        on_build: None,
        labels: (!labels.is_empty()).then_some(labels),
        stop_signal: differs(&c.stop_signal, &image.stop_signal),
        stop_timeout: c.stop_timeout,
        shell: None,
        host_config: None,
        networking_config: None,
    }
}

/// The entries of `container` its image did not have; `None` when there are none.
fn only_new(container: Option<&Vec<String>>, image: Option<&Vec<String>>) -> Option<Vec<String>> {
    let image: BTreeSet<&String> = image.into_iter().flatten().collect();
    let mut new: Vec<String> = container
        .into_iter()
        .flatten()
        .filter(|v| !image.contains(v))
        .cloned()
        .collect();
    new.sort();
    (!new.is_empty()).then_some(new)
}

/// Docker's default hostname and alias: the first 12 characters of the container's id.
fn is_short_id(value: &str, id: &str) -> bool {
    value.len() == 12 && id.starts_with(value)
}

/// `HostConfig` as Docker reported it, with the anonymous volumes mounted by name and links in
/// the form `create` takes.
fn host_config(
    old: &ContainerInspectResponse,
    host: &HostConfig,
    config: &ContainerConfig,
) -> HostConfig {
    let mut host = host.clone();
    let mut binds = host.binds.clone().unwrap_or_default();
    let mut mounts = host.mounts.clone().unwrap_or_default();
    for (name, destination, rw) in anonymous_volumes(old, &host, config) {
        // A `--mount type=volume,dst=…` without a source: give it the old volume's name.
        if let Some(m) = mounts.iter_mut().find(|m| {
            m.typ == Some(MountType::VOLUME)
                && m.target.as_deref() == Some(destination.as_str())
                && m.source.as_deref().unwrap_or_default().is_empty()
        }) {
            m.source = Some(name);
            continue;
        }
        binds.push(if rw {
            format!("{name}:{destination}")
        } else {
            format!("{name}:{destination}:ro")
        });
    }
    host.binds = (!binds.is_empty()).then_some(binds);
    host.mounts = (!mounts.is_empty()).then_some(mounts);
    host.links = host
        .links
        .map(|links| links.iter().map(|l| link(l)).collect());
    host
}

/// The volumes Docker created for the container without a name (an image's `VOLUME` or
/// `-v /path`): `(volume name, destination, writable)`, by destination.
fn anonymous_volumes(
    old: &ContainerInspectResponse,
    host: &HostConfig,
    config: &ContainerConfig,
) -> Vec<(String, String, bool)> {
    let declared: BTreeSet<&String> = config.volumes.iter().flatten().collect();
    // Destinations a bind or a named volume already covers.
    let bound: BTreeSet<String> = host
        .binds
        .iter()
        .flatten()
        .filter_map(|b| b.split(':').nth(1).map(str::to_owned))
        .chain(host.mounts.iter().flatten().filter_map(|m| {
            m.source
                .as_deref()
                .filter(|s| !s.is_empty())
                .and(m.target.clone())
        }))
        .collect();
    let mut out: Vec<(String, String, bool)> = old
        .mounts
        .iter()
        .flatten()
        .filter(|m| m.typ.as_deref() == Some("volume"))
        .filter_map(|m| {
            let destination = m.destination.clone()?;
            let name = m.name.clone().filter(|n| !n.is_empty())?;
            let unnamed_mount = host.mounts.iter().flatten().any(|hm| {
                hm.target.as_deref() == Some(destination.as_str())
                    && hm.source.as_deref().unwrap_or_default().is_empty()
            });
            let anonymous =
                (declared.contains(&destination) || unnamed_mount) && !bound.contains(&destination);
            anonymous.then(|| (name, destination, m.rw.unwrap_or(true)))
        })
        .collect();
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

/// A link as inspect shows it (`/db:/web/database`) in the form `create` takes (`db:database`).
fn link(inspected: &str) -> String {
    match inspected.split_once(':') {
        Some((target, alias)) => {
            let target = target.trim_start_matches('/');
            let alias = alias.rsplit('/').next().unwrap_or(alias);
            format!("{target}:{alias}")
        }
        None => inspected.trim_start_matches('/').to_owned(),
    }
}

/// The endpoint of the network the container was created on (`HostConfig.NetworkMode`) and the
/// ones connected later. None for `host`, `none` and `container:…`, which have no endpoints of
/// their own.
#[allow(clippy::type_complexity)]
fn endpoints(
    old: &ContainerInspectResponse,
    network_mode: &str,
    id: &str,
) -> (
    Option<(String, EndpointSettings)>,
    Vec<(String, EndpointSettings)>,
) {
    if matches!(network_mode, "host" | "none") || network_mode.starts_with("container:") {
        return (None, Vec::new());
    }
    let first_name = if network_mode.is_empty() || network_mode == "default" {
        "bridge"
    } else {
        network_mode
    };
    let mut networks: Vec<(String, EndpointSettings)> = old
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|(name, e)| {
            let settings = endpoint(&e, id);
            (name, settings)
        })
        .collect();
    networks.sort_by(|a, b| a.0.cmp(&b.0));
    let position = networks.iter().position(|(n, _)| n == first_name);
    let first = match position {
        Some(i) => Some(networks.remove(i)),
        None => Some((first_name.to_owned(), EndpointSettings::default())),
    };
    (first, networks)
}

/// What the user set of one endpoint: static addresses, aliases (not the short id), links,
/// driver options, and a MAC address that is not the one Docker derives from the IPv4 address.
fn endpoint(e: &EndpointSettings, id: &str) -> EndpointSettings {
    let ipam = e.ipam_config.as_ref().and_then(|c| {
        let keep = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        let link_local = c.link_local_ips.clone().filter(|l| !l.is_empty());
        let config = EndpointIpamConfig {
            ipv4_address: keep(&c.ipv4_address),
            ipv6_address: keep(&c.ipv6_address),
            link_local_ips: link_local,
        };
        (config != EndpointIpamConfig::default()).then_some(config)
    });
    let aliases: Vec<String> = e
        .aliases
        .iter()
        .flatten()
        .filter(|a| !is_short_id(a, id))
        .cloned()
        .collect();
    let mac = e
        .mac_address
        .clone()
        .filter(|m| !m.is_empty())
        .filter(|m| Some(m.as_str()) != derived_mac(e.ip_address.as_deref()).as_deref());
    EndpointSettings {
        ipam_config: ipam,
        links: e
            .links
            .clone()
            .filter(|l| !l.is_empty())
            .map(|l| l.iter().map(|x| link(x)).collect()),
        mac_address: mac,
        aliases: (!aliases.is_empty()).then_some(aliases),
        driver_opts: e.driver_opts.clone().filter(|o| !o.is_empty()),
        ..Default::default()
    }
}

/// The MAC address Docker's bridge driver gives an endpoint: `02:42` and the four IPv4 bytes.
fn derived_mac(ipv4: Option<&str>) -> Option<String> {
    let ip: std::net::Ipv4Addr = ipv4?.parse().ok()?;
    let [a, b, c, d] = ip.octets();
    Some(format!("02:42:{a:02x}:{b:02x}:{c:02x}:{d:02x}"))
}

/// Points a container that shares `old_id`'s network namespace at `new_id` instead.
pub fn repoint_namespace(body: &mut ContainerCreateBody, old: &[&str], new_id: &str) {
    let Some(host) = body.host_config.as_mut() else {
        return;
    };
    if let Some(target) = host
        .network_mode
        .as_deref()
        .and_then(|m| m.strip_prefix("container:"))
    {
        if old.contains(&target) {
            host.network_mode = Some(format!("container:{new_id}"));
        }
    }
}

/// Points the links of a dependent that name `from` (e.g. the old container under its aside
/// name) at `to` instead, keeping their aliases.
pub fn relink(body: &mut ContainerCreateBody, from: &str, to: &str) {
    let swap = |links: &mut Vec<String>| {
        for l in links.iter_mut() {
            if let Some((target, alias)) = l.split_once(':')
                && target == from
            {
                *l = format!("{to}:{alias}");
            }
        }
    };
    if let Some(links) = body.host_config.as_mut().and_then(|h| h.links.as_mut()) {
        swap(links);
    }
    for endpoint in body
        .networking_config
        .iter_mut()
        .flat_map(|n| n.endpoints_config.iter_mut())
        .flat_map(|e| e.values_mut())
    {
        if let Some(links) = endpoint.links.as_mut() {
            swap(links);
        }
    }
}

/// The containers that depend on `target` — sharing its network namespace
/// (`--network container:…`), linking to it, or naming it in `lookout.depends_on` or
/// Watchtower's `depends-on` — and, in turn, those that depend on them. In the order to
/// recreate them: each after what it depends on; stop them in the reverse order. Names without
/// Docker's `/`.
pub fn dependents(
    target: &ContainerInspectResponse,
    others: &[ContainerInspectResponse],
) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    let mut frontier = vec![(
        target.id.clone().unwrap_or_default(),
        container_name(target),
    )];
    while let Some((id, name)) = frontier.pop() {
        let mut direct: Vec<&ContainerInspectResponse> = others
            .iter()
            .filter(|c| {
                let n = container_name(c);
                n != container_name(target) && !order.contains(&n) && depends_on(c, &id, &name)
            })
            .collect();
        direct.sort_by_key(|c| container_name(c));
        for c in direct {
            let n = container_name(c);
            order.push(n.clone());
            frontier.insert(0, (c.id.clone().unwrap_or_default(), n));
        }
    }
    order
}

/// Whether `c` depends on the container with this id and name.
fn depends_on(c: &ContainerInspectResponse, id: &str, name: &str) -> bool {
    let host = c.host_config.as_ref();
    let namespace = host
        .and_then(|h| h.network_mode.as_deref())
        .and_then(|m| m.strip_prefix("container:"))
        .is_some_and(|t| (!id.is_empty() && t == id) || t == name);
    let linked = host
        .and_then(|h| h.links.as_ref())
        .into_iter()
        .flatten()
        .chain(
            c.network_settings
                .as_ref()
                .and_then(|n| n.networks.as_ref())
                .into_iter()
                .flat_map(|n| n.values())
                .flat_map(|e| e.links.iter().flatten()),
        )
        .any(|l| link(l).split(':').next() == Some(name));
    let labelled = c
        .config
        .as_ref()
        .and_then(|cfg| cfg.labels.as_ref())
        .into_iter()
        .flat_map(|labels| {
            [LABEL_DEPENDS_ON, LABEL_WATCHTOWER_DEPENDS_ON]
                .into_iter()
                .filter_map(|k| labels.get(k))
        })
        .any(|v| {
            v.split(',')
                .any(|n| n.trim().trim_start_matches('/') == name)
        });
    namespace || linked || labelled
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = include_str!("../../tests/fixtures/standalone/full.inspect.json");
    const FULL_IMAGE: &str = include_str!("../../tests/fixtures/standalone/full.image-config.json");
    const NETNS: &str =
        include_str!("../../tests/fixtures/standalone/netns-dependent.inspect.json");
    const AUTOREMOVE: &str =
        include_str!("../../tests/fixtures/standalone/autoremove-linked.inspect.json");
    const LINK_TARGET: &str =
        include_str!("../../tests/fixtures/standalone/link-target.inspect.json");

    fn inspect(json: &str) -> ContainerInspectResponse {
        serde_json::from_str(json).unwrap()
    }

    fn image() -> ImageConfig {
        serde_json::from_str(FULL_IMAGE).unwrap()
    }

    fn full_plan() -> Recreate {
        plan(&inspect(FULL), &image(), "h16cap:v2").unwrap()
    }

    #[test]
    fn only_what_the_user_set_is_carried_into_the_config() {
        let p = full_plan();
        let b = &p.body;
        assert_eq!(p.name, "h16cap");
        assert_eq!(b.image.as_deref(), Some("h16cap:v2"));
        // (field, carried value, why)
        let cases: [(&str, Option<String>, Option<String>); 10] = [
            (
                "Env",
                b.env.as_ref().map(|e| e.join(",")),
                Some("USER_VAR=u".into()),
            ),
            (
                "Cmd",
                b.cmd.as_ref().map(|c| c.join(" ")),
                Some(
                    "sh -c echo hi > /anon/x; trap 'exit 0' TERM; while true; do sleep 1; done"
                        .into(),
                ),
            ),
            (
                "Entrypoint",
                b.entrypoint.as_ref().map(|c| c.join(" ")),
                None,
            ),
            ("WorkingDir", b.working_dir.clone(), None),
            ("User", b.user.clone(), None),
            (
                "ExposedPorts",
                b.exposed_ports.as_ref().map(|c| c.join(",")),
                None,
            ),
            ("Volumes", b.volumes.as_ref().map(|c| c.join(",")), None),
            (
                "Healthcheck",
                b.healthcheck.as_ref().map(|h| format!("{:?}", h.test)),
                None,
            ),
            ("StopSignal", b.stop_signal.clone(), None),
            // Derived from the id: the new container gets its own.
            ("Hostname", b.hostname.clone(), None),
        ];
        for (field, got, want) in cases {
            assert_eq!(got, want, "{field}");
        }
        let labels = b.labels.clone().unwrap();
        assert_eq!(
            labels,
            HashMap::from([("user.label".to_owned(), "x".to_owned())]),
            "the image's labels are left to the new image"
        );
    }

    #[test]
    fn settings_that_differ_from_the_old_image_are_carried() {
        let mut old = inspect(FULL);
        let c = old.config.as_mut().unwrap();
        c.working_dir = Some("/data".into());
        c.user = Some("1000:1000".into());
        c.entrypoint = Some(vec!["/bin/sh".into()]);
        c.stop_signal = Some("SIGINT".into());
        c.exposed_ports = Some(vec!["8080/tcp".into(), "9090/udp".into()]);
        c.volumes = Some(vec!["/anon".into(), "/extra".into()]);
        c.healthcheck = Some(bollard::models::HealthConfig {
            test: Some(vec!["NONE".into()]),
            ..Default::default()
        });
        c.env = Some(vec!["PATH=/usr/bin".into(), "IMAGE_VAR=one".into()]);
        c.labels
            .as_mut()
            .unwrap()
            .insert("org.example.version".into(), "changed".into());
        c.hostname = Some("cache".into());
        let b = plan(&old, &image(), "x:2").unwrap().body;
        assert_eq!(b.working_dir.as_deref(), Some("/data"));
        assert_eq!(b.user.as_deref(), Some("1000:1000"));
        assert_eq!(b.entrypoint, Some(vec!["/bin/sh".to_owned()]));
        assert_eq!(b.stop_signal.as_deref(), Some("SIGINT"));
        assert_eq!(b.exposed_ports, Some(vec!["9090/udp".to_owned()]));
        assert_eq!(b.volumes, Some(vec!["/extra".to_owned()]));
        assert_eq!(b.healthcheck.unwrap().test, Some(vec!["NONE".to_owned()]));
        assert_eq!(b.env, Some(vec!["PATH=/usr/bin".to_owned()]));
        assert_eq!(
            b.labels
                .unwrap()
                .get("org.example.version")
                .map(String::as_str),
            Some("changed")
        );
        assert_eq!(b.hostname.as_deref(), Some("cache"));
    }

    #[test]
    fn host_config_is_kept_and_the_anonymous_volume_is_mounted_by_name() {
        let host = full_plan().body.host_config.unwrap();
        assert_eq!(
            host.binds.unwrap(),
            vec![
                "h16cap-vol:/named".to_owned(),
                "/tmp/h16cap:/bind:ro".to_owned(),
                "11d919a6388843d82a2e52f83fd5022ce7367caaf20e589a5048775874fa0049:/anon".to_owned(),
            ]
        );
        assert_eq!(host.memory, Some(64 * 1024 * 1024));
        assert_eq!(
            host.restart_policy.unwrap().name,
            Some(bollard::models::RestartPolicyNameEnum::UNLESS_STOPPED)
        );
        let ports = host.port_bindings.unwrap();
        let binding = &ports["8080/tcp"].as_ref().unwrap()[0];
        assert_eq!(binding.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(host.network_mode.as_deref(), Some("h16cap-net"));
    }

    #[test]
    fn the_first_network_is_created_with_and_later_ones_connected() {
        let p = full_plan();
        let endpoints = p.body.networking_config.unwrap().endpoints_config.unwrap();
        let first = &endpoints["h16cap-net"];
        assert_eq!(endpoints.len(), 1);
        assert_eq!(first.aliases, Some(vec!["web".to_owned()]));
        assert_eq!(
            first.ipam_config.as_ref().unwrap().ipv4_address.as_deref(),
            Some("172.31.250.10")
        );
        // 02:42:ac:1f:fa:0a is what Docker derives from 172.31.250.10.
        assert_eq!(first.mac_address, None);
        assert_eq!(first.network_id, None);
        assert_eq!(first.ip_address, None);
        assert_eq!(p.connect.len(), 1);
        let (name, second) = &p.connect[0];
        assert_eq!(name, "h16cap-net2");
        assert_eq!(second.aliases, Some(vec!["second".to_owned()]));
        assert_eq!(second.ipam_config, None);
    }

    #[test]
    fn a_mac_address_the_user_chose_is_kept() {
        let mut old = inspect(FULL);
        let networks = old
            .network_settings
            .as_mut()
            .unwrap()
            .networks
            .as_mut()
            .unwrap();
        networks.get_mut("h16cap-net").unwrap().mac_address = Some("02:00:00:00:00:01".into());
        let p = plan(&old, &image(), "x:2").unwrap();
        let endpoints = p.body.networking_config.unwrap().endpoints_config.unwrap();
        assert_eq!(
            endpoints["h16cap-net"].mac_address.as_deref(),
            Some("02:00:00:00:00:01")
        );
    }

    #[test]
    fn network_modes_without_endpoints_get_none() {
        let cases = [
            ("host", None),
            ("none", None),
            ("container:4290e1bacad1", None),
            ("default", Some("bridge")),
            ("bridge", Some("bridge")),
        ];
        for (mode, want) in cases {
            let mut old = inspect(FULL);
            old.host_config.as_mut().unwrap().network_mode = Some(mode.into());
            let p = plan(&old, &image(), "x:2").unwrap();
            let first = p
                .body
                .networking_config
                .map(|n| n.endpoints_config.unwrap().into_keys().next().unwrap());
            assert_eq!(first.as_deref(), want, "{mode}");
        }
    }

    #[test]
    fn auto_remove_containers_are_refused_naming_the_container() {
        let err = plan(&inspect(AUTOREMOVE), &image(), "x:2").unwrap_err();
        assert_eq!(
            err,
            RecreateError::AutoRemove {
                container: "h16cap-rm".into()
            }
        );
        assert!(err.to_string().contains("--rm"), "{err}");
    }

    #[test]
    fn links_and_devices_are_kept_in_create_form() {
        let mut old = inspect(AUTOREMOVE);
        old.host_config.as_mut().unwrap().auto_remove = Some(false);
        let host = plan(&old, &image(), "x:2")
            .unwrap()
            .body
            .host_config
            .unwrap();
        assert_eq!(host.links, Some(vec!["h16cap-db:db".to_owned()]));
        let device = &host.devices.unwrap()[0];
        assert_eq!(device.path_on_host.as_deref(), Some("/dev/null"));
        assert_eq!(device.path_in_container.as_deref(), Some("/dev/xnull"));
    }

    #[test]
    fn privileged_and_capabilities_are_kept() {
        let mut old = inspect(FULL);
        let host = old.host_config.as_mut().unwrap();
        host.privileged = Some(true);
        host.cap_add = Some(vec!["NET_ADMIN".into()]);
        host.security_opt = Some(vec!["no-new-privileges".into()]);
        let host = plan(&old, &image(), "x:2")
            .unwrap()
            .body
            .host_config
            .unwrap();
        assert_eq!(host.privileged, Some(true));
        assert_eq!(host.cap_add, Some(vec!["NET_ADMIN".to_owned()]));
        assert_eq!(
            host.security_opt,
            Some(vec!["no-new-privileges".to_owned()])
        );
    }

    #[test]
    fn a_namespace_sharer_keeps_no_hostname_and_is_repointed() {
        let side = inspect(NETNS);
        let mut p = plan(&side, &image(), "h16cap:v1").unwrap();
        assert_eq!(p.body.hostname, None);
        assert!(p.body.networking_config.is_none());
        let old_id = "4290e1bacad1ee910851b09d388ee7a73929c93cf915f611753beb0b74c47aab";
        repoint_namespace(&mut p.body, &[old_id, "h16cap"], "newid");
        assert_eq!(
            p.body.host_config.unwrap().network_mode.as_deref(),
            Some("container:newid")
        );
    }

    #[test]
    fn dependents_come_in_dependency_order() {
        let target = inspect(FULL);
        let side = inspect(NETNS); // container:<target id>
        let mut labelled = inspect(LINK_TARGET);
        labelled.name = Some("/after-side".into());
        labelled.id = Some("c0ffee".into());
        labelled
            .config
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(LABEL_WATCHTOWER_DEPENDS_ON.into(), "h16cap-side".into());
        let mut linker = inspect(AUTOREMOVE); // links to h16cap-db
        linker.host_config.as_mut().unwrap().links = Some(vec!["/h16cap:/h16cap-rm/db".into()]);
        let mut unrelated = inspect(LINK_TARGET);
        unrelated.name = Some("/unrelated".into());
        let mut by_label = inspect(LINK_TARGET);
        by_label.name = Some("/by-label".into());
        by_label
            .config
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(LABEL_DEPENDS_ON.into(), "other, h16cap".into());
        let others = [labelled, side, unrelated, linker, by_label, target.clone()];
        assert_eq!(
            dependents(&target, &others),
            vec!["by-label", "h16cap-rm", "h16cap-side", "after-side"]
        );
    }

    #[test]
    fn links_to_the_old_container_are_pointed_at_its_name_again() {
        let mut old = inspect(AUTOREMOVE);
        old.host_config.as_mut().unwrap().auto_remove = Some(false);
        old.host_config.as_mut().unwrap().links = Some(vec![
            "/h16cap-db-lookout-old:/h16cap-rm/db".into(),
            "/other:/h16cap-rm/other".into(),
        ]);
        let mut body = plan(&old, &image(), "x:2").unwrap().body;
        relink(&mut body, "h16cap-db-lookout-old", "h16cap-db");
        assert_eq!(
            body.host_config.unwrap().links,
            Some(vec!["h16cap-db:db".to_owned(), "other:other".to_owned()])
        );
    }

    #[test]
    fn links_are_rewritten_to_create_form() {
        let cases = [
            ("/db:/web/database", "db:database"),
            ("db:database", "db:database"),
            ("/db", "db"),
        ];
        for (given, want) in cases {
            assert_eq!(link(given), want, "{given}");
        }
    }

    #[test]
    fn derived_macs_follow_the_ipv4_address() {
        assert_eq!(
            derived_mac(Some("172.31.250.10")).as_deref(),
            Some("02:42:ac:1f:fa:0a")
        );
        assert_eq!(derived_mac(Some("")), None);
        assert_eq!(derived_mac(None), None);
    }
}
