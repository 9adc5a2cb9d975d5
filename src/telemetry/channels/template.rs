//! Operator templates for a channel's title and body, in MiniJinja (Jinja2's syntax), checked at
//! load time: a template that does not parse, or that names a variable an event does not have,
//! is refused then, not when the first rollback is reported.
//!
//! A template sees the generic webhook body's fields (`type`, `event`, `service`, `host`,
//! `old_image`, `new_image`, `reason`, `stage`, `compose_service`, `compose_file`, `id`, …),
//! `title` and `body` (lookout's own text) and, for a summary, `type = "summary"` and `events`
//! (a list of those bodies). Strict: an unknown variable is an error, `x is defined` tests one.

use minijinja::{Environment, UndefinedBehavior, Value};
use serde_json::json;

use super::Message;

/// The title and body templates of one channel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Templates {
    pub title: Option<String>,
    pub body: Option<String>,
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env
}

/// What a template is given for `m`.
fn context(m: &Message) -> Value {
    let mut ctx = m.event_json.clone();
    if let serde_json::Value::Object(map) = &mut ctx {
        map.insert("title".into(), json!(m.title));
        map.insert("body".into(), json!(m.body));
    }
    Value::from(minijinja::value::Serde(ctx))
}

impl Templates {
    pub fn is_empty(&self) -> bool {
        self.title.is_none() && self.body.is_none()
    }

    /// Checks `source` (named `what` in the message): it must parse and render for every kind
    /// of event and for a summary.
    pub fn check(source: &str, what: &str) -> Result<(), String> {
        let env = environment();
        env.template_from_str(source)
            .map_err(|e| format!("{what} is not a valid template: {e}"))?;
        for m in samples() {
            env.render_str(source, context(&m)).map_err(|e| {
                format!(
                    "{what} fails for a {} message: {e}",
                    m.event_json["type"].as_str().unwrap_or("")
                )
            })?;
        }
        Ok(())
    }

    /// `m` with its title and body rendered from the templates. A template that fails here
    /// (it passed [`Templates::check`]) keeps lookout's own text and says so in the log.
    pub fn apply(&self, m: &Message) -> Message {
        if self.is_empty() {
            return m.clone();
        }
        let env = environment();
        let ctx = context(m);
        let render = |source: &Option<String>, fallback: &str| {
            match source {
            None => fallback.to_owned(),
            Some(src) => env.render_str(src, ctx.clone()).unwrap_or_else(|error| {
                tracing::warn!(%error, id = %m.id, "notification template failed; lookout's own text is sent");
                fallback.to_owned()
            }),
        }
        };
        let mut out = m.clone();
        out.title = render(&self.title, &m.title);
        out.body = render(&self.body, &m.body);
        out
    }
}

/// One message of each kind and a summary of them, to check templates against.
fn samples() -> Vec<Message> {
    use crate::telemetry::{Event, Stage, UpdateInfo};
    let u = UpdateInfo {
        service: "web".into(),
        compose_service: "web".into(),
        compose_file: "/srv/web/compose.yaml".into(),
        old_image: "nginx:1.27.0".into(),
        new_image: "nginx:1.27.1".into(),
        old_digest: None,
        new_digest: None,
        started_at: jiff::Timestamp::UNIX_EPOCH,
        duration: None,
    };
    let events = [
        Event::UpdateAvailable(u.clone()),
        Event::UpdateStarted(u.clone()),
        Event::Updated(u.clone()),
        Event::RolledBack {
            update: u.clone(),
            reason: "unhealthy".into(),
        },
        Event::UpdateFailed {
            update: u,
            stage: Stage::Pull,
            reason: "pull failed".into(),
        },
    ];
    let mut out: Vec<Message> = events
        .iter()
        .filter_map(|e| Message::for_event(e, "host", jiff::Timestamp::UNIX_EPOCH))
        .collect();
    if let Some(s) = Message::summary(&out, "host") {
        out.push(s);
    }
    out
}
