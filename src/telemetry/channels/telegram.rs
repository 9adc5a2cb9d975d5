//! Telegram (<https://core.telegram.org/bots/api#sendmessage>): one `sendMessage` per chat,
//! `POST {api}/bot{token}/sendMessage`, text in MarkdownV2 (escaped as the Bot API says) or
//! HTML.

use serde_json::{Value, json};

use super::shoutrrr::{Parts, UrlError};
use super::{Message, Prepared, escape_html, trim_base};
use crate::secret::Secret;

/// The Bot API's address; a self-hosted Bot API server has another.
pub const API: &str = "https://api.telegram.org";

/// Telegram refuses longer texts.
const MAX_TEXT_CHARS: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseMode {
    MarkdownV2,
    Html,
}

/// A chat id (`-1001234567890`) or public channel (`@name`), and a forum topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chat {
    pub id: String,
    pub thread: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Telegram {
    pub api: String,
    /// `123456:ABC-DEF…`.
    pub token: Secret,
    pub chats: Vec<Chat>,
    pub parse_mode: ParseMode,
    /// Sent silently when `false`.
    pub notification: bool,
    pub preview: bool,
    pub title: Option<String>,
}

/// A bot token as BotFather hands it out: digits, `:`, then letters, digits, `_` and `-`.
pub(crate) fn valid_token(token: &str) -> bool {
    token.split_once(':').is_some_and(|(id, secret)| {
        !id.is_empty()
            && id.bytes().all(|b| b.is_ascii_digit())
            && !secret.is_empty()
            && secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    })
}

/// `-100123`, `42`, `@channel_name`, each optionally `:THREAD_ID`.
pub(crate) fn parse_chat(s: &str) -> Option<Chat> {
    let s = s.trim();
    let (id, thread) = match s.rsplit_once(':') {
        Some((id, t)) => (id, Some(t.parse::<i64>().ok()?)),
        None => (s, None),
    };
    let numeric = id
        .strip_prefix('-')
        .unwrap_or(id)
        .bytes()
        .all(|b| b.is_ascii_digit())
        && !id.trim_start_matches('-').is_empty();
    let channel = id.strip_prefix('@').is_some_and(|n| {
        !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    });
    (numeric || channel).then(|| Chat {
        id: id.to_owned(),
        thread,
    })
}

impl Telegram {
    /// `telegram://TOKEN@telegram?chats=@channel,-100123[:THREAD]&notification=&preview=&parsemode=&title=`.
    pub(crate) fn from_url(p: &mut Parts) -> Result<Self, UrlError> {
        let token = format!("{}:{}", p.user, p.password.clone().unwrap_or_default());
        p.secret(&token);
        if let Some(pw) = p.password.clone() {
            p.secret(&pw);
        }
        if !valid_token(&token) {
            return Err(p.error(
                "the bot token is not of the form 123456:ABC-DEF…: write telegram://TOKEN@telegram?chats=…",
            ));
        }
        let list = p.take_list(&["chats", "channels"]).unwrap_or_default();
        let chats = Self::chats(p, list)?;
        let parse_mode = match p
            .take(&["parsemode"])
            .map(|m| m.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("none" | "markdown" | "markdownv2") => ParseMode::MarkdownV2,
            Some("html") => ParseMode::Html,
            Some(other) => {
                return Err(p.error(format!("parsemode is {other:?}; write markdownv2 or html")));
            }
        };
        Ok(Self {
            api: API.to_owned(),
            token: Secret::new(token),
            chats,
            parse_mode,
            notification: p.take_bool(&["notification"])?.unwrap_or(true),
            preview: p.take_bool(&["preview"])?.unwrap_or(true),
            title: p.take_title(),
        })
    }

    /// The chats of a list, or an error naming the first that is not a chat.
    pub fn chats(p: &Parts, list: Vec<String>) -> Result<Vec<Chat>, UrlError> {
        if list.is_empty() {
            return Err(p.error("names no chat: add ?chats=@channel or ?chats=CHAT_ID"));
        }
        list.iter()
            .map(|c| {
                parse_chat(c).ok_or_else(|| {
                    p.error(format!(
                        "{c:?} is not a chat: write a chat id (-1001234567890), @channel, or either with :THREAD_ID"
                    ))
                })
            })
            .collect()
    }

    pub fn text(&self, m: &Message) -> String {
        let title = match &self.title {
            Some(prefix) => format!("{prefix}: {}", m.title),
            None => m.title.clone(),
        };
        let mut out = match self.parse_mode {
            ParseMode::MarkdownV2 => format!(
                "*{}*\n{}",
                escape_markdown_v2(&title),
                escape_markdown_v2(&m.body)
            ),
            ParseMode::Html => format!("<b>{}</b>\n{}", escape_html(&title), escape_html(&m.body)),
        };
        for (k, v) in m.facts.iter().filter(|(k, _)| k == "Where") {
            out.push('\n');
            out.push_str(&match self.parse_mode {
                ParseMode::MarkdownV2 => {
                    format!("_{}:_ {}", escape_markdown_v2(k), escape_markdown_v2(v))
                }
                ParseMode::Html => format!("<i>{}:</i> {}", escape_html(k), escape_html(v)),
            });
        }
        if out.chars().count() > MAX_TEXT_CHARS {
            // Cut on a character that starts no escape, well below the limit.
            let cut: String = out.chars().take(MAX_TEXT_CHARS - 16).collect();
            let cut = cut.trim_end_matches('\\').to_owned();
            out = match self.parse_mode {
                ParseMode::MarkdownV2 => format!("{cut} …"),
                ParseMode::Html => format!("{cut} …"),
            };
        }
        out
    }

    pub fn requests(&self, m: &Message) -> Vec<Prepared> {
        let text = self.text(m);
        let url = format!(
            "{}/bot{}/sendMessage",
            trim_base(&self.api),
            self.token.expose()
        );
        self.chats
            .iter()
            .map(|chat| {
                let mut body = json!({
                    "chat_id": chat.id,
                    "text": text,
                    "parse_mode": match self.parse_mode {
                        ParseMode::MarkdownV2 => "MarkdownV2",
                        ParseMode::Html => "HTML",
                    },
                    "disable_notification": !self.notification,
                    "link_preview_options": {"is_disabled": !self.preview},
                });
                if let (Some(thread), Value::Object(map)) = (chat.thread, &mut body) {
                    map.insert("message_thread_id".into(), json!(thread));
                }
                Prepared::json(url.clone(), &body)
            })
            .collect()
    }
}

/// `s` as literal text in a MarkdownV2 message: `\` and each of
/// `_ * [ ] ( ) ~ ` > # + - = | { } . !` preceded by a backslash, as the Bot API requires
/// outside entities.
pub(crate) fn escape_markdown_v2(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 4);
    for c in s.chars() {
        if matches!(
            c,
            '\\' | '_'
                | '*'
                | '['
                | ']'
                | '('
                | ')'
                | '~'
                | '`'
                | '>'
                | '#'
                | '+'
                | '-'
                | '='
                | '|'
                | '{'
                | '}'
                | '.'
                | '!'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
