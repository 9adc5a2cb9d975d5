//! Generic JSON endpoints, shoutrrr's `generic+https://…`: a POST (or PUT) of
//! `{"title", "message"}` (keys configurable) with lookout's event JSON under `"event"`, or the
//! plain text with another `contenttype`. Query parameters that are not shoutrrr's are
//! forwarded to the endpoint (`_name` forwards a reserved `name`); `@Name=value` adds a
//! header and `$key=value` a JSON field, as in shoutrrr.

use serde_json::{Map, Value, json};

use super::shoutrrr::{Parts, UrlError};
use super::{Message, Method, Prepared};

#[derive(Clone)]
pub struct Generic {
    /// The endpoint, with the forwarded query (and any credentials in it).
    pub url: String,
    pub method: Method,
    /// `None`: JSON.
    pub content_type: Option<String>,
    pub headers: Vec<(String, String)>,
    pub extra: Vec<(String, String)>,
    pub title_key: String,
    pub message_key: String,
    pub title: Option<String>,
}

impl std::fmt::Debug for Generic {
    /// The URL as scheme and host only: its path is the credential.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generic")
            .field("url", &crate::redact::redact_url(&self.url))
            .field("method", &self.method)
            .field("content_type", &self.content_type)
            .field("title_key", &self.title_key)
            .field("message_key", &self.message_key)
            .finish()
    }
}

const RESERVED: &[&str] = &[
    "contenttype",
    "disabletls",
    "messagekey",
    "method",
    "requestmethod",
    "template",
    "title",
    "titlekey",
];

impl Generic {
    pub fn new(url: String) -> Self {
        Self {
            url,
            method: Method::Post,
            content_type: None,
            headers: Vec::new(),
            extra: Vec::new(),
            title_key: "title".into(),
            message_key: "message".into(),
            title: None,
        }
    }

    /// `generic+https://host/path?…`, `generic+http://…`, or `generic://host/path?…`
    /// (HTTPS unless `disabletls=yes`).
    pub(crate) fn from_url(p: &mut Parts, original: &str) -> Result<Self, UrlError> {
        let (scheme, rest) = original.split_once("://").unwrap_or(("generic", original));
        let mut target = match scheme.to_ascii_lowercase().as_str() {
            "generic+https" => format!("https://{rest}"),
            "generic+http" => format!("http://{rest}"),
            _ => {
                let tls = p.take_bool(&["disabletls"])?;
                format!("{}://{rest}", super::shoutrrr::http_scheme(tls))
            }
        };
        let mut parsed =
            url::Url::parse(&target).map_err(|e| p.error(format!("is not a valid URL ({e})")))?;
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(p.error("names no host"));
        }
        if let Some(pw) = parsed.password() {
            p.secret(pw);
        }
        let mut g = Self::new(String::new());
        let mut forwarded = Vec::new();
        for (key, value) in parsed.query_pairs() {
            let lower = key.to_ascii_lowercase();
            if let Some(name) = key.strip_prefix('@') {
                g.headers.push((name.to_owned(), value.into_owned()));
            } else if let Some(name) = key.strip_prefix('$') {
                g.extra.push((name.to_owned(), value.into_owned()));
            } else if let Some(name) = key.strip_prefix('_') {
                forwarded.push((name.to_owned(), value.into_owned()));
            } else if RESERVED.contains(&lower.as_str()) {
                match lower.as_str() {
                    "contenttype" => {
                        g.content_type =
                            Some(value.into_owned()).filter(|c| !c.starts_with("application/json"));
                    }
                    "messagekey" => g.message_key = value.into_owned(),
                    "titlekey" => g.title_key = value.into_owned(),
                    "title" => g.title = Some(value.into_owned()).filter(|t| !t.is_empty()),
                    "method" | "requestmethod" => {
                        g.method = match value.to_ascii_uppercase().as_str() {
                            "POST" => Method::Post,
                            "PUT" => Method::Put,
                            other => {
                                return Err(
                                    p.error(format!("method is {other:?}; write POST or PUT"))
                                );
                            }
                        }
                    }
                    "template" if value.is_empty() || value.eq_ignore_ascii_case("json") => {}
                    "template" => {
                        return Err(p.error(format!(
                            "template {value:?} is not supported: lookout sends JSON (template=json) or, with contenttype, the plain text"
                        )));
                    }
                    _ => {}
                }
            } else {
                forwarded.push((key.into_owned(), value.into_owned()));
            }
        }
        for (_, v) in forwarded.iter().chain(&g.headers) {
            p.secret(v);
        }
        if forwarded.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(&forwarded);
        }
        target = parsed.to_string();
        // Everything was read here, from the URL as written (key case kept).
        p.forward_rest = true;
        g.url = target;
        Ok(g)
    }

    pub fn request(&self, m: &Message) -> Prepared {
        let title = match &self.title {
            Some(prefix) => format!("{prefix}: {}", m.title),
            None => m.title.clone(),
        };
        let mut r = match &self.content_type {
            Some(content_type) => Prepared {
                method: self.method,
                url: self.url.clone(),
                headers: vec![(
                    "Content-Type".to_owned(),
                    crate::secret::Secret::new(content_type.clone()),
                )],
                body: format!("{title}\n{}", m.plain_body()).into_bytes(),
            },
            None => {
                let mut map = Map::new();
                for (k, v) in &self.extra {
                    map.insert(k.clone(), json!(v));
                }
                map.insert(self.title_key.clone(), json!(title));
                map.insert(self.message_key.clone(), json!(m.plain_body()));
                map.insert("event".into(), m.event_json.clone());
                Prepared::json(self.url.clone(), &Value::Object(map)).method(self.method)
            }
        };
        for (k, v) in &self.headers {
            r = r.header(k, v.clone());
        }
        r
    }
}
