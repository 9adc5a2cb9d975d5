//! One page of a tag list (`tags/list`, Docker Hub's tags API), parsed with the list's length
//! bounded while it is parsed.
//!
//! A page within the byte cap can still hold a million tiny names; parsing it into
//! `serde_json::Value` first would take hundreds of megabytes. [`parse_page`] reads the list
//! field element by element and stops with [`PageError::TooMany`] once the budget is spent, so
//! memory stays proportional to the tags lookout accepts. Other fields are skipped without
//! being kept, except `next` (Docker Hub) and `manifest` (Google's push times).

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess};

/// A parsed page.
#[derive(Debug)]
pub(crate) struct Page<T, M> {
    /// The list field (`tags`, `results`); `null` or absent is empty.
    pub items: Vec<T>,
    /// `next`, when the page has one (Docker Hub).
    pub next: Option<String>,
    /// `manifest`, when the page has one (Google).
    pub manifest: Option<M>,
}

/// Why a page could not be used.
#[derive(Debug)]
pub(crate) enum PageError {
    /// The list field has more than the budget of elements.
    TooMany,
    /// Not the JSON of such a page.
    Json(serde_json::Error),
}

/// Parses `body` as an object whose `list` field is an array of at most `budget` `T`s.
pub(crate) fn parse_page<T: DeserializeOwned, M: DeserializeOwned>(
    body: &[u8],
    list: &str,
    budget: usize,
) -> Result<Page<T, M>, PageError> {
    let over = Cell::new(false);
    let seed = PageSeed::<T, M> {
        list,
        budget,
        over: &over,
        types: PhantomData,
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = seed
        .deserialize(&mut de)
        .and_then(|page| de.end().map(|()| page));
    match parsed {
        Ok(page) => Ok(page),
        Err(_) if over.get() => Err(PageError::TooMany),
        Err(e) => Err(PageError::Json(e)),
    }
}

struct PageSeed<'a, T, M> {
    list: &'a str,
    budget: usize,
    over: &'a Cell<bool>,
    types: PhantomData<(T, M)>,
}

impl<'de, T: DeserializeOwned, M: DeserializeOwned> DeserializeSeed<'de> for PageSeed<'_, T, M> {
    type Value = Page<T, M>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, T: DeserializeOwned, M: DeserializeOwned> de::Visitor<'de> for PageSeed<'_, T, M> {
    type Value = Page<T, M>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an object with a {:?} list", self.list)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut page = Page {
            items: Vec::new(),
            next: None,
            manifest: None,
        };
        while let Some(key) = map.next_key::<String>()? {
            if key == self.list {
                page.items = map.next_value_seed(ListSeed {
                    budget: self.budget,
                    over: self.over,
                    item: PhantomData,
                })?;
            } else if key == "next" {
                page.next = map.next_value()?;
            } else if key == "manifest" {
                page.manifest = map.next_value()?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(page)
    }
}

/// An array of at most `budget` `T`s, or `null`.
struct ListSeed<'a, T> {
    budget: usize,
    over: &'a Cell<bool>,
    item: PhantomData<T>,
}

impl<'de, T: DeserializeOwned> DeserializeSeed<'de> for ListSeed<'_, T> {
    type Value = Vec<T>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, T: DeserializeOwned> de::Visitor<'de> for ListSeed<'_, T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<T>()? {
            if items.len() >= self.budget {
                self.over.set(true);
                return Err(de::Error::custom("more elements than the budget"));
            }
            items.push(item);
        }
        Ok(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(body: &str, budget: usize) -> Result<Vec<String>, PageError> {
        parse_page::<String, IgnoredAny>(body.as_bytes(), "tags", budget).map(|p| p.items)
    }

    #[test]
    fn reads_the_list_and_skips_the_rest() {
        assert_eq!(
            tags(
                r#"{"name":"x","tags":["a","b"],"other":{"deep":[1,2]}}"#,
                10
            )
            .unwrap(),
            ["a", "b"]
        );
        assert!(tags(r#"{"name":"x","tags":null}"#, 10).unwrap().is_empty());
        assert!(tags(r#"{"name":"x"}"#, 10).unwrap().is_empty());
        let p = parse_page::<String, serde_json::Value>(
            br#"{"results":["a"],"next":"https://h/p2","manifest":{"k":1}}"#,
            "results",
            10,
        )
        .unwrap();
        assert_eq!(p.next.as_deref(), Some("https://h/p2"));
        assert_eq!(p.manifest, Some(serde_json::json!({"k": 1})));
    }

    #[test]
    fn stops_as_soon_as_the_budget_is_spent() {
        assert_eq!(tags(r#"{"tags":["a","b","c"]}"#, 3).unwrap().len(), 3);
        assert!(matches!(
            tags(r#"{"tags":["a","b","c","d"]}"#, 3),
            Err(PageError::TooMany)
        ));
        // The rest of an oversized page is never read: its syntax does not matter.
        assert!(matches!(
            tags(r#"{"tags":["a","b","c","d", this is not JSON"#, 3),
            Err(PageError::TooMany)
        ));
        assert!(matches!(
            tags(r#"{"tags":["a"]}"#, 0),
            Err(PageError::TooMany)
        ));
    }

    #[test]
    fn anything_else_is_a_json_error() {
        for bad in [
            r#"{"tags":[1]}"#,
            r#"{"tags":"a"}"#,
            r#"["a"]"#,
            r#"{"tags":["a"]} trailing"#,
            "",
        ] {
            assert!(matches!(tags(bad, 10), Err(PageError::Json(_))), "{bad}");
        }
    }
}
