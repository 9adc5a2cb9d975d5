use std::path::PathBuf;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::Value;

use super::shoutrrr::{Parsed, parse, split_list};
use super::*;
use crate::telemetry::UpdateInfo;

/// Every URL example of shoutrrr's and Watchtower's documentation for the services lookout
/// has, with its source, and what it must read as.
const DOC_EXAMPLES: &[(&str, &str, &str)] = &[
    // containrrr/shoutrrr docs/services/gotify.md
    (
        "gotify.md",
        "gotify://gotify.example.com:443/AzyoeNS.D4iJLVa/?title=Great+News&priority=1",
        "gotify",
    ),
    (
        "gotify.md",
        "gotify://example.com:443/path/to/gotify/AzyoeNS.D4iJLVa/?title=Great+News&priority=1",
        "gotify",
    ),
    // docs/services/overview.md (placeholders filled in)
    (
        "overview.md",
        "gotify://gotify.example.com/AzyoeNS.D4iJLVa",
        "gotify",
    ),
    // docs/services/telegram.md and docs/guides/generate (the generator's output)
    (
        "telegram.md",
        "telegram://110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw@telegram?chats=@mychannel",
        "telegram",
    ),
    (
        "telegram.md",
        "telegram://110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw@telegram?chats=-100123456789",
        "telegram",
    ),
    (
        "telegram.md",
        "telegram://110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw@telegram/?channels=@channel&notification=no&preview=false&parseMode=html",
        "telegram",
    ),
    (
        "generate.md",
        "telegram://110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw@telegram?channels=@mychannel&notification=Yes&parsemode=None&preview=No",
        "telegram",
    ),
    (
        "telegram.md (message_thread_id)",
        "telegram://110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw@telegram?chats=-100123456789:42",
        "telegram",
    ),
    // docs/services/teams.md
    (
        "teams.md",
        "teams://11111111-4444-4444-8444-cccccccccccc@22222222-4444-4444-8444-cccccccccccc/33333333012222222222333333333344/44444444-4444-4444-8444-cccccccccccc/V2ESyij_gAljSoUQHvZoZYzlpAoAXExyOl26dlf1xHEx05?host=contoso.webhook.office.com&color=FF0000&title=Alert",
        "teams",
    ),
    (
        "overview.md",
        "teams://group@tenant/altId/groupOwner?host=organization.webhook.office.com",
        "teams",
    ),
    // docs/services/matrix.md: an access token (no user)
    (
        "matrix.md",
        "matrix://:syt_token_value@matrix.example.org:8448/?rooms=!roomID1:example.org",
        "matrix",
    ),
    // docs/services/pushover.md
    (
        "pushover.md",
        "pushover://shoutrrr:apiToken@userKey/?devices=device1,device2",
        "pushover",
    ),
    (
        "pushover.md",
        "pushover://shoutrrr:token@userKey/?devices=device&title=Custom+Title&priority=1",
        "pushover",
    ),
    // docs/services/slack.md (old and new forms)
    (
        "slack.md",
        "slack://T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
        "slack",
    ),
    (
        "slack.md",
        "slack://ShoutrrrBot@T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX?channel=non-default-chan&color=good&emoji=sunny&title=Great+News",
        "slack",
    ),
    (
        "slack.md (0.6+)",
        "slack://hook:T00000000-B00000000-XXXXXXXXXXXXXXXXXXXXXXXX@webhook",
        "slack",
    ),
    (
        "slack_test.go",
        "slack://hook:AAAAAAAAA-BBBBBBBBB-123456789123456789123456@webhook?botname=testbot&color=3f00fe&title=Test+title",
        "slack",
    ),
    // Watchtower docs/notifications.md
    (
        "watchtower notifications.md",
        "slack://watchtower@token-a/token-b/token-c",
        "slack-invalid",
    ),
    (
        "watchtower notifications.md",
        "discord://token@channel",
        "discord",
    ),
    // docs/services/discord.md
    (
        "discord.md",
        "discord://W3dE2OZz4C13_4z_uHfDOoC7BqTW288s-z1ykqI0iJnY_HjRqMGO8Sc7YDqvf_KVKjhJ@693853386302554172",
        "discord",
    ),
    // docs/services/mattermost.md
    (
        "mattermost.md",
        "mattermost://your-domain.com/bywsw8zt5jgpte3nm65qjiru6h",
        "mattermost",
    ),
    (
        "mattermost.md",
        "mattermost://your-domain.com/bywsw8zt5jgpte3nm65qjiru6h/shoutrrrUser/shoutrrrChannel",
        "mattermost",
    ),
    // docs/services/rocketchat.md
    (
        "rocketchat.md",
        "rocketchat://your-domain.com/hooks/8eGdRzc9r4YYNyvge/2XYQcX9NBwJBKfQnphpebPcnXZcPEi32Nt4NKJfrnbhsbRfX",
        "rocketchat",
    ),
    (
        "rocketchat.md",
        "rocketchat://shoutrrrUser@your-domain.com/hooks/8eGdRzc9r4YYNyvge/2XYQcX9NBwJBKfQnphpebPcnXZcPEi32Nt4NKJfrnbhsbRfX/shoutrrrChannel",
        "rocketchat",
    ),
    (
        "rocketchat.md",
        "rocketchat://shoutrrrUser@your-domain.com/hooks/8eGdRzc9r4YYNyvge/2XYQcX9NBwJBKfQnphpebPcnXZcPEi32Nt4NKJfrnbhsbRfX/@shoutrrrReceiver",
        "rocketchat",
    ),
    // docs/services/generic.md
    (
        "generic.md",
        "generic+https://example.com/api/v1/postStuff",
        "generic",
    ),
    (
        "generic.md",
        "generic+https://example.com/api/v1/postStuff?contenttype=text/plain",
        "generic",
    ),
    (
        "generic.md",
        "generic+https://example.com/api/v1/postStuff?_contenttype=text/plain",
        "generic",
    ),
    (
        "generic.md (http)",
        "generic+http://192.168.1.10:8080/hook",
        "generic",
    ),
    // docs/services/email.md and overview.md (placeholders filled in)
    (
        "email.md",
        "smtp://username:password@smtp.example.com:587/?fromAddress=watchtower@example.com&toAddresses=ops@example.com,dev@example.com",
        "email",
    ),
    (
        "overview.md",
        "smtp://username:password@smtp.example.com:25/?from=watchtower@example.com&to=ops@example.com",
        "email",
    ),
    // shoutrrr docs/services/email.md, its URL format with the placeholders filled in, and
    // the URL Watchtower's legacy email settings turn into (pkg/notifications/email.go)
    (
        "email.md",
        "smtp://username:password@host.example.com:25/?from=fromAddress@example.com&to=recipient1@example.com,recipient2@example.com",
        "email",
    ),
    (
        "watchtower email.go",
        "smtp://user:pass@smtp.example.com:587/?auth=Plain&clienthost=localhost&encryption=Auto&fromaddress=watchtower%40example.com&fromname=Watchtower&subject=Watchtower+updates+on+host&toaddresses=admin%40example.com&usehtml=No&usestarttls=Yes",
        "email",
    ),
    // docs/services/mqtt.md (placeholders filled in)
    (
        "mqtt.md",
        "mqtt://broker.example.com:1883?topic=watchtower",
        "mqtt",
    ),
    (
        "mqtt.md",
        "mqtt://broker.example.com:8883?topic=watchtower&disableTLS=true&clientID=lookout&username=bob&password=hunter22",
        "mqtt",
    ),
    // ntfy: shoutrrr's pkg/services/ntfy/ntfy_config.go keys
    ("ntfy_config.go", "ntfy://ntfy.sh/goveto-alerts", "ntfy"),
    (
        "ntfy_config.go",
        "ntfy://user:pass1234@ntfy.example.org/alerts?priority=high&tags=warning,skull&title=Box&scheme=https",
        "ntfy",
    ),
    (
        "ntfy docs (token)",
        "ntfy://:tk_AgQdq7mVBoFD37zQVN29RhuMzNIz2@ntfy.example.org/alerts",
        "ntfy",
    ),
];

#[test]
fn every_documented_url_parses() {
    for (source, url, want) in DOC_EXAMPLES {
        let got = parse(url);
        if *want == "slack-invalid" {
            // Watchtower's placeholder tokens ("token-a") are not Slack's alphanumeric parts;
            // the error says how the URL must look.
            let e = got.unwrap_err().to_string();
            assert!(e.contains("slack://hook:"), "{source}: {e}");
            continue;
        }
        let parsed = got.unwrap_or_else(|e| panic!("{source}: {url}: {e}"));
        assert_eq!(parsed.service.name(), *want, "{source}: {url}");
    }
}

#[test]
fn watchtower_url_lists_split_on_white_space() {
    let list = "discord://token@channel slack://hook:T0-B0-X1@webhook\n  ntfy://ntfy.sh/t";
    let names: Vec<&str> = split_list(list)
        .into_iter()
        .map(|u| parse(u).unwrap().service.name())
        .collect();
    assert_eq!(names, ["discord", "slack", "ntfy"]);
}

fn must<T>(url: &str, pick: impl Fn(Service) -> Option<T>) -> T {
    pick(parse(url).unwrap().service).unwrap()
}

#[test]
fn urls_read_into_the_services_values() {
    let g = must(
        "gotify://example.com:443/path/to/gotify/AzyoeNS.D4iJLVa/?title=Great+News&priority=1",
        |s| match s {
            Service::Gotify(g) => Some(g),
            _ => None,
        },
    );
    assert_eq!(g.server, "https://example.com:443/path/to/gotify");
    assert_eq!(g.token.expose(), "AzyoeNS.D4iJLVa");
    assert_eq!(
        (g.priority, g.title.as_deref()),
        (Some(1), Some("Great News"))
    );

    let t = must(
        "telegram://110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw@telegram?chats=@mychannel,-100123:7&notification=no&preview=no",
        |s| match s {
            Service::Telegram(t) => Some(t),
            _ => None,
        },
    );
    assert_eq!(
        t.token.expose(),
        "110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
    );
    assert_eq!(
        t.chats,
        [
            telegram::Chat {
                id: "@mychannel".into(),
                thread: None
            },
            telegram::Chat {
                id: "-100123".into(),
                thread: Some(7)
            }
        ]
    );
    assert!(!t.notification && !t.preview);

    let teams = must(
        "teams://11111111-4444-4444-8444-cccccccccccc@22222222-4444-4444-8444-cccccccccccc/33333333012222222222333333333344/44444444-4444-4444-8444-cccccccccccc/V2ESyij_gAljSoUQHvZoZYzlpAoAXExyOl26dlf1xHEx05?host=contoso.webhook.office.com&color=FF0000&title=Alert",
        |s| match s {
            Service::Teams(t) => Some(t),
            _ => None,
        },
    );
    assert_eq!(
        teams.webhook_url,
        "https://contoso.webhook.office.com/webhookb2/11111111-4444-4444-8444-cccccccccccc@22222222-4444-4444-8444-cccccccccccc/IncomingWebhook/33333333012222222222333333333344/44444444-4444-4444-8444-cccccccccccc/V2ESyij_gAljSoUQHvZoZYzlpAoAXExyOl26dlf1xHEx05"
    );
    assert_eq!(teams::named_colour("FF0000"), Some("attention"));

    let slack = must(
        "slack://ShoutrrrBot@T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX?channel=non-default-chan&color=good&emoji=sunny&title=Great+News",
        |s| match s {
            Service::Slack(h) => Some(h),
            _ => None,
        },
    );
    assert_eq!(
        slack.webhook_url,
        "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"
    );
    assert_eq!(slack.username.as_deref(), Some("ShoutrrrBot"));
    assert_eq!(slack.channel.as_deref(), Some("non-default-chan"));
    assert_eq!(slack.icon_emoji.as_deref(), Some("sunny"));

    let hook = must(
        "slack://hook:T00000000-B00000000-XXXXXXXXXXXXXXXXXXXXXXXX@webhook",
        |s| match s {
            Service::Slack(h) => Some(h),
            _ => None,
        },
    );
    assert_eq!(hook.webhook_url, slack.webhook_url);

    let mm = must(
        "mattermost://your-domain.com/bywsw8zt5jgpte3nm65qjiru6h/shoutrrrUser/shoutrrrChannel",
        |s| match s {
            Service::Slack(h) => Some(h),
            _ => None,
        },
    );
    assert_eq!(
        mm.webhook_url,
        "https://your-domain.com/hooks/bywsw8zt5jgpte3nm65qjiru6h"
    );
    assert_eq!(
        (mm.username.as_deref(), mm.channel.as_deref()),
        (Some("shoutrrrUser"), Some("shoutrrrChannel"))
    );

    let rc = must(
        "rocketchat://shoutrrrUser@your-domain.com/hooks/8eGdRzc9r4YYNyvge/2XYQcX9NBwJBKfQnphpebPcnXZcPEi32Nt4NKJfrnbhsbRfX/shoutrrrChannel",
        |s| match s {
            Service::Slack(h) => Some(h),
            _ => None,
        },
    );
    assert_eq!(
        rc.webhook_url,
        "https://your-domain.com/hooks/8eGdRzc9r4YYNyvge/2XYQcX9NBwJBKfQnphpebPcnXZcPEi32Nt4NKJfrnbhsbRfX"
    );
    assert_eq!(rc.channel.as_deref(), Some("#shoutrrrChannel"));

    let d = must(
        "discord://W3dE2OZz4C13_4z_uHfDOoC7BqTW288s-z1ykqI0iJnY_HjRqMGO8Sc7YDqvf_KVKjhJ@693853386302554172",
        |s| match s {
            Service::Discord(d) => Some(d),
            _ => None,
        },
    );
    assert_eq!(
        d.webhook_url,
        "https://discord.com/api/webhooks/693853386302554172/W3dE2OZz4C13_4z_uHfDOoC7BqTW288s-z1ykqI0iJnY_HjRqMGO8Sc7YDqvf_KVKjhJ"
    );

    let p = must(
        "pushover://shoutrrr:apiToken@userKey/?devices=device1,device2",
        |s| match s {
            Service::Pushover(p) => Some(p),
            _ => None,
        },
    );
    assert_eq!((p.token.expose(), p.user.expose()), ("apiToken", "userKey"));
    assert_eq!(p.devices, ["device1", "device2"]);

    let n = must(
        "ntfy://user:pass1234@ntfy.example.org/sub/alerts?priority=high&tags=warning,skull",
        |s| match s {
            Service::Ntfy(n) => Some(n),
            _ => None,
        },
    );
    assert_eq!(
        (n.server.as_str(), n.topic.as_str(), n.priority),
        ("https://ntfy.example.org/sub", "alerts", Some(4))
    );
    assert!(matches!(n.auth, Some(ntfy::Auth::Basic { ref user, .. }) if user == "user"));
    let n = must(
        "ntfy://:tk_abc123456@ntfy.example.org/alerts?scheme=http",
        |s| match s {
            Service::Ntfy(n) => Some(n),
            _ => None,
        },
    );
    assert_eq!(n.server, "http://ntfy.example.org");
    assert!(matches!(n.auth, Some(ntfy::Auth::Token(ref t)) if t.expose() == "tk_abc123456"));

    let g = must(
        "generic+https://example.com/api/v1/postStuff?_contenttype=text/plain&@X-Key=abc&$source=box&keep=1",
        |s| match s {
            Service::Generic(g) => Some(g),
            _ => None,
        },
    );
    assert_eq!(
        g.url,
        "https://example.com/api/v1/postStuff?contenttype=text%2Fplain&keep=1"
    );
    assert_eq!(g.content_type, None);
    assert_eq!(g.headers, [("X-Key".to_owned(), "abc".to_owned())]);
    assert_eq!(g.extra, [("source".to_owned(), "box".to_owned())]);
    let g = must(
        "generic+https://example.com/api/v1/postStuff?contenttype=text/plain",
        |s| match s {
            Service::Generic(g) => Some(g),
            _ => None,
        },
    );
    assert_eq!(
        (g.url.as_str(), g.content_type.as_deref()),
        ("https://example.com/api/v1/postStuff", Some("text/plain"))
    );

    let m = must(
        "matrix://:syt_token_value@matrix.example.org:8448/?rooms=!roomID1:example.org,alias&disableTLS=yes",
        |s| match s {
            Service::Matrix(m) => Some(m),
            _ => None,
        },
    );
    assert_eq!(m.homeserver, "http://matrix.example.org:8448");
    assert_eq!(m.rooms, ["!roomID1:example.org", "#alias"]);
}

#[test]
fn unknown_services_and_parameters_are_named() {
    let cases = [
        (
            "zulip://bot@x:key@zulip.example.com/?stream=a",
            "shoutrrr's \"zulip\" service is not supported by lookout",
        ),
        (
            "foo://bar",
            "\"foo\" is not a notification service lookout knows",
        ),
        ("ntfy.sh/topic", "is not a service URL"),
        (
            "ntfy://ntfy.sh/t?priority=high&colour=red",
            "ntfy: lookout does not support the parameter(s) \"colour\"; valid parameters are cache, click",
        ),
        (
            "telegram://110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw@telegram?chats=@c&silent=1",
            "telegram: lookout does not support the parameter(s) \"silent\"",
        ),
        (
            "telegram://110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw@telegram",
            "telegram: names no chat",
        ),
        (
            "telegram://nope@telegram?chats=@c",
            "telegram: the bot token is not of the form",
        ),
        (
            "telegram://110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw@telegram?chats=mychannel",
            "\"mychannel\" is not a chat",
        ),
        ("teams://g@t/a/b/c", "teams: names no host"),
        (
            "slack://xoxb:123456789012-1234567890123-4pdbGtKUW4GdQ7pPnkT7e5ei@C001CH4NN3L",
            "Slack API tokens (xoxb/xoxp) are not supported",
        ),
        ("discord://token@123/raw", "raw JSON mode"),
        (
            "gotify://host/tok?priority=11",
            "priority is \"11\"; write 0 to 10",
        ),
        (
            "pushover://shoutrrr:t@u/?priority=3",
            "priority is \"3\"; write -2 to 2",
        ),
        (
            "generic+https://example.com/x?template=slack",
            "template \"slack\" is not supported",
        ),
        ("smtp://host:25/?to=a@b", "names no sender"),
        ("mqtt://broker:port?topic=t", "not a valid mqtt URL"),
    ];
    for (url, want) in cases {
        let e = parse(url).unwrap_err().to_string();
        assert!(e.contains(want), "{url}: {e}");
    }
}

#[test]
fn errors_never_quote_credentials() {
    let cases = [
        "telegram://110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw@telegram?chats=nope",
        "ntfy://user:pa55word-value@ntfy.example.org/alerts?nope=1",
        "gotify://host/AzyoeNS.D4iJLVa/?priority=99",
        "discord://W3dE2OZz4C13_4z_uHfDOoC7BqTW288s@693853386302554172/x",
        "smtp://bob:pa55word-value@mail:bad/",
    ];
    for url in cases {
        let e = parse(url).unwrap_err().to_string();
        for secret in [
            "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw",
            "pa55word-value",
            "AzyoeNS.D4iJLVa",
            "W3dE2OZz4C13_4z_uHfDOoC7BqTW288s",
        ] {
            assert!(!e.contains(secret), "{url}: {e}");
        }
    }
    let parsed =
        parse("telegram://110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw@telegram?chats=@c").unwrap();
    assert!(
        parsed
            .secrets
            .iter()
            .any(|s| s == "110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw")
    );
    assert!(
        !format!("{:?}", parsed.service).contains("AAHdqTcv"),
        "Debug shows no token"
    );
}

#[test]
fn email_mqtt_and_matrix_password_login_are_delivered_and_a_roomless_matrix_is_refused() {
    for url in [
        "smtp://u:p@mail.example.com:587/?from=a@example.com&to=b@example.com",
        "mqtt://broker.example.com:1883?topic=t",
        "mqtts://broker.example.com?topic=t",
        "matrix://bob:hunter22@matrix.example.org/?rooms=!a:b",
    ] {
        assert_eq!(parse(url).unwrap().service.undeliverable(), None, "{url}");
    }
    let why = parse("matrix://:tok@matrix.example.org/")
        .unwrap()
        .service
        .undeliverable()
        .unwrap_or_default();
    assert!(why.contains("names no room"), "{why}");
}

fn email(url: &str) -> email::Email {
    match parse(url) {
        Ok(Parsed {
            service: Service::Email(e),
            ..
        }) => e,
        other => panic!("{url}: {other:?}"),
    }
}

#[test]
fn email_urls_choose_encryption_port_and_auth_as_shoutrrr_documents() {
    use email::{Auth, Encryption};
    // (URL, encryption, port, auth)
    for (url, enc, port, auth) in [
        // Credentials are never sent in plain text: STARTTLS is required.
        (
            "smtp://u:pw@mail.example.com/?from=a@example.com&to=b@example.com",
            Encryption::StartTls,
            25,
            Auth::Default,
        ),
        // Port 465 is implicit TLS.
        (
            "smtp://u:pw@mail.example.com:465/?from=a@example.com&to=b@example.com",
            Encryption::Implicit,
            465,
            Auth::Default,
        ),
        // No credentials: STARTTLS when offered.
        (
            "smtp://relay.example.com/?from=a@example.com&to=b@example.com",
            Encryption::Opportunistic,
            25,
            Auth::Default,
        ),
        (
            "smtp://relay.example.com/?from=a@example.com&to=b@example.com&usestarttls=no",
            Encryption::None,
            25,
            Auth::Default,
        ),
        (
            "smtp://u:pw@mail.example.com/?from=a@example.com&to=b@example.com&encryption=ImplicitTLS&auth=Login",
            Encryption::Implicit,
            465,
            Auth::Login,
        ),
        (
            "smtp://u:pw@mail.example.com:2525/?from=a@example.com&to=b@example.com&encryption=ExplicitTLS&auth=OAuth2",
            Encryption::StartTls,
            2525,
            Auth::OAuth2,
        ),
        (
            "smtp://u:pw@mail.example.com/?from=a@example.com&to=b@example.com&encryption=None&auth=Plain",
            Encryption::None,
            25,
            Auth::Plain,
        ),
    ] {
        let e = email(url);
        assert_eq!((e.encryption, e.port, e.auth), (enc, port, auth), "{url}");
    }
    for (url, want) in [
        (
            "smtp://u:pw@mail.example.com/?from=a@example.com&to=b@example.com&usestarttls=no",
            "plain text",
        ),
        (
            "smtp://u:pw@mail.example.com/?from=a@example.com&to=b@example.com&auth=CRAMMD5",
            "CRAMMD5 is not supported",
        ),
        (
            "smtp://mail.example.com/?from=not-an-address&to=b@example.com",
            "not an email address",
        ),
        (
            "smtp://mail.example.com/?from=a@example.com&to=b@example.com,nope",
            "\"nope\" is not an email address",
        ),
        (
            "smtp://mail.example.com/?from=a@example.com",
            "names no recipient",
        ),
        (
            "smtp://mail.example.com/?from=a@example.com&to=b@example.com&encryption=maybe",
            "is not one of None, ExplicitTLS, ImplicitTLS, Auto",
        ),
        (
            "smtp://u:pw@mail.example.com/?from=a@example.com&to=b@example.com&dkim=yes",
            "\"dkim\"",
        ),
    ] {
        let e = parse(url).unwrap_err().to_string();
        assert!(e.contains(want), "{url}: {e}");
        assert!(!e.contains("pw@"), "{e}");
    }
}

#[test]
fn a_mail_has_every_recipient_a_subject_and_both_bodies() {
    let e = email(
        "smtp://u:pw@mail.example.com/?from=lookout@example.com&to=a@example.com,b@example.com&subject=Box&fromname=Lookout",
    );
    let m = message(EventKind::RolledBack);
    let mail = e.mail(&m).unwrap();
    let envelope = mail.envelope();
    let to: Vec<String> = envelope.to().iter().map(ToString::to_string).collect();
    assert_eq!(to, ["a@example.com", "b@example.com"]);
    let text = String::from_utf8(mail.formatted()).unwrap();
    assert!(text.contains("Subject: Box: web: rolled back"), "{text}");
    assert!(
        text.contains("From: Lookout <lookout@example.com>"),
        "{text}"
    );
    assert!(text.contains("multipart/alternative"), "{text}");
    assert!(text.contains("Content-Type: text/plain"), "{text}");
    assert!(text.contains("Content-Type: text/html"), "{text}");
    assert!(
        text.contains(&format!("Message-ID: <{}@lookout>", m.id)),
        "{text}"
    );
    let plain_only =
        email("smtp://mail.example.com/?from=l@example.com&to=a@example.com&usehtml=no");
    let text = String::from_utf8(plain_only.mail(&m).unwrap().formatted()).unwrap();
    assert!(
        !text.contains("text/html") && !text.contains("multipart"),
        "{text}"
    );
}

fn mqtt(url: &str) -> mqtt::Mqtt {
    match parse(url) {
        Ok(Parsed {
            service: Service::Mqtt(m),
            ..
        }) => m,
        other => panic!("{url}: {other:?}"),
    }
}

#[test]
fn mqtt_topics_discovery_and_state_follow_home_assistants_update_entity() {
    let m = mqtt("mqtt://broker.example.com/?install=yes");
    assert_eq!(m.port, 1883);
    assert_eq!(m.state_topic("box", "web"), "lookout/box/web/state");
    assert_eq!(m.install_topic("box", "web"), "lookout/box/web/install");
    assert_eq!(
        m.discovery_topic("box", "web"),
        "homeassistant/update/lookout_box/web/config"
    );
    let d = m.discovery("box", "web");
    for (k, v) in [
        ("state_topic", "lookout/box/web/state"),
        ("command_topic", "lookout/box/web/install"),
        ("payload_install", "install"),
        ("availability_topic", "lookout/box/availability"),
        ("unique_id", "lookout_box_web"),
        ("device_class", "firmware"),
    ] {
        assert_eq!(d[k], v, "{k}: {d}");
    }
    let off = mqtt("mqtts://broker.example.com/?topic=home/lookout&discoveryPrefix=ha");
    assert_eq!((off.port, off.tls, off.install), (8883, true, false));
    assert_eq!(off.state_topic("box", "a/b+c"), "home/lookout/a_b_c/state");
    assert!(
        off.discovery("box", "web").get("command_topic").is_none(),
        "no install: no button"
    );
    assert_eq!(
        off.discovery_topic("box", "web"),
        "ha/update/lookout_box/web/config"
    );
    for (url, want) in [
        ("mqtt://b/?topic=a/%23", "must not contain"),
        ("mqtts://b/?disabletls=yes", "write mqtt://"),
        ("mqtt://b/?install=maybe", "write yes or no"),
    ] {
        let e = parse(url).unwrap_err().to_string();
        assert!(e.contains(want), "{url}: {e}");
    }

    let state = mqtt::ServiceState {
        image: Some("ghcr.io/org/app:1.2.0".into()),
        candidate: Some("ghcr.io/org/app:1.3.0".into()),
        result: Some("update_available".into()),
        reason: Some("outside the maintenance window".into()),
        in_progress: false,
        updated_at: None,
    };
    let j = state.json("app");
    assert_eq!(j["installed_version"], "1.2.0");
    assert_eq!(j["latest_version"], "1.3.0");
    assert_eq!(
        j["release_summary"],
        "update_available: outside the maintenance window"
    );
    assert_eq!(j["title"], "app");
    let same_tag = mqtt::ServiceState {
        image: Some("nginx:latest".into()),
        candidate: Some("nginx:latest".into()),
        ..Default::default()
    };
    let j = same_tag.json("web");
    assert_ne!(
        j["installed_version"], j["latest_version"],
        "a new digest is an update: {j}"
    );
    let none = mqtt::ServiceState {
        image: Some("nginx:1.27".into()),
        ..Default::default()
    };
    assert_eq!(none.json("web")["latest_version"], "1.27", "up to date");
    for (image, version) in [
        ("nginx", "latest"),
        ("registry:5000/a/b:2.1", "2.1"),
        (
            "nginx:1.27@sha256:0123456789abcdef0123",
            "1.27@0123456789ab",
        ),
    ] {
        assert_eq!(mqtt::version_of(image), version, "{image}");
    }
}

#[test]
fn matrix_password_login_follows_the_client_server_api() {
    let m = match parse("matrix://bob:hunter22@matrix.example.org/?rooms=!a:b&deviceid=DEV") {
        Ok(Parsed {
            service: Service::Matrix(m),
            ..
        }) => m,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        m.login_url(),
        "https://matrix.example.org/_matrix/client/v3/login"
    );
    assert_eq!(
        m.login_body("bob"),
        serde_json::json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": "bob"},
            "password": "hunter22",
            "initial_device_display_name": "lookout",
            "device_id": "DEV",
        })
    );
    assert!(matrix::access_token_of(br#"{"access_token":"syt_abc","user_id":"@b:x"}"#).is_some());
    for bad in [
        &br#"{"user_id":"@b:x"}"#[..],
        br#"{"access_token":""}"#,
        b"<html>",
        br#"{"access_token":"a b"}"#,
    ] {
        assert!(matrix::access_token_of(bad).is_none());
    }
}

pub(crate) fn event(kind: EventKind) -> Event {
    let u = UpdateInfo {
        service: "web".into(),
        compose_service: "web".into(),
        compose_file: PathBuf::from("/srv/app/compose.yaml"),
        old_image: "nginx:1.26".into(),
        new_image: "nginx:1.27".into(),
        old_digest: None,
        new_digest: Some(format!("sha256:{}", "a".repeat(64))),
        started_at: "2026-01-02T03:04:05Z".parse().unwrap(),
        duration: Some(Duration::from_secs(12)),
    };
    match kind {
        EventKind::UpdateAvailable => Event::UpdateAvailable(u),
        EventKind::UpdateStarted => Event::UpdateStarted(u),
        EventKind::Updated => Event::Updated(u),
        EventKind::RolledBack => Event::RolledBack {
            update: u,
            reason: "health check failed: exit 1 (*_[x]_*)".into(),
        },
        EventKind::UpdateFailed => Event::UpdateFailed {
            update: u,
            stage: crate::telemetry::Stage::Pull,
            reason: "pull failed".into(),
        },
    }
}

fn message(kind: EventKind) -> Message {
    Message::for_event(&event(kind), "box-1", Timestamp::UNIX_EPOCH).unwrap()
}

#[test]
fn messages_say_service_from_to_reason_and_where() {
    let m = message(EventKind::RolledBack);
    assert_eq!(m.title, "web: rolled back");
    let facts: Vec<&str> = m.facts.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(facts, ["Service", "Host", "From", "To", "Reason", "Where"]);
    assert!(
        m.body.contains("nginx:1.27")
            && m.body.contains("nginx:1.26")
            && m.body.contains("health check failed")
    );
    assert!(m.plain().contains("/srv/app/compose.yaml"));
    let s = Message::summary(
        &[
            message(EventKind::Updated),
            m.clone(),
            message(EventKind::Updated),
        ],
        "box-1",
    )
    .unwrap();
    assert_eq!(s.title, "lookout on box-1: 2 updated, 1 rolled back");
    assert_eq!(
        (s.kind, s.severity),
        (EventKind::RolledBack, Severity::Warning)
    );
    assert_eq!(s.body.lines().count(), 3);
}

#[test]
fn markdown_v2_escapes_every_reserved_character() {
    let all = r"_*[]()~`>#+-=|{}.!\";
    assert_eq!(
        telegram::escape_markdown_v2(all),
        r"\_\*\[\]\(\)\~\`\>\#\+\-\=\|\{\}\.\!\\"
    );
    assert_eq!(
        telegram::escape_markdown_v2("plain text 123"),
        "plain text 123"
    );
    let t = must("telegram://1:AA@telegram?chats=@c", |s| match s {
        Service::Telegram(t) => Some(t),
        _ => None,
    });
    let text = t.text(&message(EventKind::RolledBack));
    assert!(text.starts_with("*web: rolled back*\n"), "{text}");
    assert!(text.contains(r"nginx:1\.27 did not pass"), "{text}");
    assert!(text.contains(r"exit 1 \(\*\_\[x\]\_\*\)"), "{text}");
    assert!(text.contains(r"/srv/app/compose\.yaml"), "{text}");
}

fn body(p: &Prepared) -> Value {
    serde_json::from_slice(&p.body).unwrap()
}

#[test]
fn each_service_builds_its_documented_request() {
    let m = message(EventKind::UpdateFailed);
    let r = &parse("ntfy://:tk_abc123456@ntfy.example.org/alerts")
        .unwrap()
        .service
        .requests(&m)[0];
    assert_eq!(
        (r.method, r.url.as_str()),
        (Method::Post, "https://ntfy.example.org/")
    );
    let b = body(r);
    assert_eq!(
        (b["topic"].as_str(), b["priority"].as_u64()),
        (Some("alerts"), Some(5))
    );
    assert_eq!(b["tags"], serde_json::json!(["x", "rotating_light"]));
    assert!(
        r.headers
            .iter()
            .any(|(k, v)| k == "Authorization" && v.expose() == "Bearer tk_abc123456")
    );

    let r = &parse("gotify://gotify.example.com/AzyoeNS.D4iJLVa")
        .unwrap()
        .service
        .requests(&m)[0];
    assert_eq!(r.url, "https://gotify.example.com/message");
    assert!(
        r.headers
            .iter()
            .any(|(k, v)| k == "X-Gotify-Key" && v.expose() == "AzyoeNS.D4iJLVa")
    );
    assert_eq!(body(r)["priority"], 8);

    let rs = parse("matrix://:syt_tok@matrix.example.org/?rooms=!a:example.org,!b:example.org")
        .unwrap()
        .service
        .requests(&m);
    assert_eq!(rs.len(), 2);
    assert_eq!(rs[0].method, Method::Put);
    assert_eq!(
        rs[0].url,
        format!(
            "https://matrix.example.org/_matrix/client/v3/rooms/%21a%3Aexample%2Eorg/send/m.room.message/lookout-{}-0",
            m.id
        )
    );
    assert_eq!(body(&rs[0])["msgtype"], "m.text");

    let r = &parse("pushover://shoutrrr:apiToken@userKey/?devices=a,b&priority=2")
        .unwrap()
        .service
        .requests(&m)[0];
    assert_eq!(r.url, "https://api.pushover.net/1/messages.json");
    let b = body(r);
    assert_eq!(
        (
            b["token"].as_str(),
            b["user"].as_str(),
            b["device"].as_str()
        ),
        (Some("apiToken"), Some("userKey"), Some("a,b"))
    );
    assert_eq!(
        (
            b["priority"].as_i64(),
            b["retry"].as_u64(),
            b["expire"].as_u64()
        ),
        (Some(2), Some(300), Some(3600))
    );

    let r = &parse("teams://g@t/a/b/c?host=contoso.webhook.office.com")
        .unwrap()
        .service
        .requests(&m)[0];
    let b = body(r);
    assert_eq!(b["type"], "message");
    assert_eq!(
        b["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(b["attachments"][0]["content"]["type"], "AdaptiveCard");
}

#[test]
fn templates_are_checked_against_every_kind_of_message() {
    use super::template::Templates;
    let per_event = "{% if type == 'summary' %}{{ title }}{% else %}{{ service }}: {{ old_image }} → {{ new_image }}{% endif %}";
    assert!(Templates::check(per_event, "t").is_ok());
    assert!(
        Templates::check(
            "{% if type == 'summary' %}{{ events | length }} events{% else %}{{ title }}{% if reason %} ({{ reason }}){% endif %}{% endif %}",
            "t"
        )
        .is_ok()
    );
    let e = Templates::check("{{ service ", "title_template").unwrap_err();
    assert!(
        e.starts_with("title_template is not a valid template"),
        "{e}"
    );
    let e = Templates::check("{{ servce }}", "body_template").unwrap_err();
    assert!(
        e.starts_with("body_template fails for a update_available message"),
        "{e}"
    );
    // `service` exists for events but not for summaries.
    let e = Templates::check("{{ service }}", "t");
    assert!(
        e.is_err_and(|e| e.contains("summary")),
        "summaries have no service"
    );
}

#[test]
fn templates_replace_title_and_body() {
    use super::template::Templates;
    let t = Templates {
        title: Some("[{{ host }}] {{ title }}".into()),
        body: Some("{{ service }} {{ event }}: {{ reason }}".into()),
    };
    let m = t.apply(&message(EventKind::RolledBack));
    assert_eq!(m.title, "[box-1] web: rolled back");
    assert_eq!(
        m.body,
        "web rollback: health check failed: exit 1 (*_[x]_*)"
    );
}
