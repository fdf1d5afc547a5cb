//! The query parameters the collections share — unknown arguments refused, `detail`,
//! `fields` checked against what the resource has, `limit` — and the projection of a
//! document onto them (a plain list shows the summary fields, `fields=` exactly those).

use std::collections::HashMap;

use super::{parse_bool, parse_fields, parse_limit, ApiError, ApiResult};
use crate::model::Obj;

/// Refuses a query argument that is not in `allowed`, naming those that are.
pub fn check_params(q: &HashMap<String, String>, allowed: &[&str]) -> ApiResult<()> {
    match q.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(ApiError::bad(format!(
            "Unknown argument {k:?}: supported are {}",
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

/// What a list or show request asked to see.
#[derive(Debug)]
pub struct View<'a> {
    pub detail: bool,
    pub fields: Option<Vec<&'a str>>,
    pub limit: i64,
}

impl<'a> View<'a> {
    /// `allowed`: the query arguments; `known`: the fields `fields=` may name;
    /// `detail`: whether the path itself asks for detail (`/detail`, or a single object).
    pub fn parse(
        q: &'a HashMap<String, String>,
        allowed: &[&str],
        known: &[&str],
        detail: bool,
    ) -> ApiResult<View<'a>> {
        check_params(q, allowed)?;
        let detail = match q.get("detail") {
            Some(d) => parse_bool("detail", d)?,
            None => detail,
        };
        let fields = q
            .get("fields")
            .map(|f| parse_fields(f, known))
            .transpose()?;
        if fields.is_some() && q.get("detail").is_some() && detail {
            return Err(ApiError::bad(
                "Can not specify ?detail=True and fields in the same request.",
            ));
        }
        let limit = parse_limit(q.get("limit").map(String::as_str))?;
        Ok(View {
            detail,
            fields,
            limit,
        })
    }

    /// `full` cut to the asked fields or, for a plain list, to `summary`; `links` stay in
    /// both, as Ironic's `sanitize_dict` keeps them.
    pub fn project(&self, full: Obj, summary: &[&str]) -> Obj {
        match (&self.fields, self.detail) {
            (Some(fl), _) => full
                .into_iter()
                .filter(|(k, _)| k == "links" || fl.contains(&k.as_str()))
                .collect(),
            (None, true) => full,
            (None, false) => full
                .into_iter()
                .filter(|(k, _)| k == "links" || summary.contains(&k.as_str()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn views_follow_ironic() {
        let known = ["uuid", "name", "extra", "links"];
        let doc = json!({"uuid": "u", "name": "n", "extra": {}, "links": []})
            .as_object()
            .unwrap()
            .clone();
        let plain = q(&[]);
        let v = View::parse(&plain, &["fields", "detail"], &known, false).unwrap();
        assert_eq!(
            v.project(doc.clone(), &["uuid"]).keys().collect::<Vec<_>>(),
            ["links", "uuid"]
        );
        let f = q(&[("fields", "name")]);
        let v = View::parse(&f, &["fields", "detail"], &known, false).unwrap();
        assert_eq!(
            v.project(doc.clone(), &["uuid"]).keys().collect::<Vec<_>>(),
            ["links", "name"]
        );
        assert!(View::parse(&q(&[("fields", "nope")]), &["fields"], &known, false).is_err());
        assert!(View::parse(&q(&[("bogus", "1")]), &["fields"], &known, false).is_err());
        assert!(View::parse(
            &q(&[("fields", "name"), ("detail", "true")]),
            &["fields", "detail"],
            &known,
            false
        )
        .is_err());
        let d = q(&[("detail", "True"), ("limit", "5")]);
        let v = View::parse(&d, &["detail", "limit"], &known, false).unwrap();
        assert!(v.detail && v.limit == 5);
        assert_eq!(v.project(doc.clone(), &["uuid"]), doc);
    }
}
