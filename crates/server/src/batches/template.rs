//! Prompt templates expanded into batch input lines: `{name}` placeholders
//! filled from the values of each variable (every combination) or from
//! explicit rows. The expansion is the same JSONL a caller could have
//! uploaded, so it is validated, stored and run exactly like one.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::input::ENDPOINT;
use crate::dto::batches::BatchTemplate;
use crate::error::ApiError;

/// Row keys that override the body's field of the same name.
const ROW_FIELDS: &[&str] = &[
    "seed",
    "size",
    "model",
    "n",
    "steps",
    "guidance_scale",
    "sampler",
    "schedule",
];

fn bad(code: &'static str, message: String) -> ApiError {
    ApiError::invalid(code, "template", message)
}

/// The pieces of a template text: literal text and variable names.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Var(String),
}

/// Parses `{name}` placeholders (`[A-Za-z0-9_]+`; `{{` and `}}` are
/// literal braces).
fn pieces(text: &str, field: &str) -> Result<Vec<Piece>, ApiError> {
    let mut out = Vec::new();
    let mut literal = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                literal.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                literal.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) if c.is_ascii_alphanumeric() || c == '_' => name.push(c),
                        _ => {
                            return Err(bad(
                                "invalid_template",
                                format!(
                                    "template.{field} has an unclosed or malformed placeholder \
                                     after `{{{name}`; placeholders are `{{name}}` of letters, \
                                     digits and `_`, and `{{{{`/`}}}}` are literal braces"
                                ),
                            ));
                        }
                    }
                }
                if name.is_empty() {
                    return Err(bad(
                        "invalid_template",
                        format!("template.{field} has an empty placeholder `{{}}`"),
                    ));
                }
                if !literal.is_empty() {
                    out.push(Piece::Text(std::mem::take(&mut literal)));
                }
                out.push(Piece::Var(name));
            }
            '}' => {
                return Err(bad(
                    "invalid_template",
                    format!("template.{field} has a lone `}}`; write `}}}}` for a literal brace"),
                ));
            }
            c => literal.push(c),
        }
    }
    if !literal.is_empty() {
        out.push(Piece::Text(literal));
    }
    Ok(out)
}

fn fill(pieces: &[Piece], values: &BTreeMap<String, String>) -> String {
    pieces
        .iter()
        .map(|p| match p {
            Piece::Text(t) => t.as_str(),
            Piece::Var(v) => values.get(v).map_or("", String::as_str),
        })
        .collect()
}

/// The number of combinations of `variables`, or `None` past `max`.
fn product(variables: &BTreeMap<String, Vec<String>>, max: usize) -> Option<usize> {
    variables
        .values()
        .try_fold(1usize, |n, v| n.checked_mul(v.len()).filter(|n| *n <= max))
}

/// The template as JSONL request lines (with their newlines), or 400
/// naming what is wrong: `invalid_template`, `unknown_variable` (a
/// placeholder without values), `unused_variable` (values no placeholder
/// uses), `batch_too_large` (more than `max` lines).
pub fn expand(template: &BatchTemplate, max: usize) -> Result<String, ApiError> {
    let prompt = pieces(&template.prompt, "prompt")?;
    let negative = template
        .negative_prompt
        .as_deref()
        .map(|n| pieces(n, "negative_prompt"))
        .transpose()?;
    let used: BTreeSet<String> = prompt
        .iter()
        .chain(negative.iter().flatten())
        .filter_map(|p| match p {
            Piece::Var(v) => Some(v.clone()),
            Piece::Text(_) => None,
        })
        .collect();
    for field in ["prompt", "negative_prompt"] {
        if template.body.contains_key(field) {
            return Err(bad(
                "invalid_template",
                format!("template.body.{field} is not allowed; it comes from template.{field}"),
            ));
        }
    }
    let rows: Vec<Row> = match (template.variables.is_empty(), template.rows.is_empty()) {
        (false, false) => {
            return Err(bad(
                "invalid_template",
                "template has both `variables` and `rows`; give one".into(),
            ));
        }
        (true, true) if !used.is_empty() => {
            return Err(bad(
                "unknown_variable",
                format!(
                    "template uses {} but gives no `variables` or `rows`",
                    list(&used)
                ),
            ));
        }
        (_, true) => combinations(template, &used, max)?,
        (true, false) => explicit_rows(template, &used, max)?,
    };
    let mut text = String::new();
    for (i, (custom_id, values, overrides)) in rows.into_iter().enumerate() {
        let mut body = template.body.clone();
        body.insert("prompt".into(), json!(fill(&prompt, &values)));
        if let Some(negative) = &negative {
            body.insert("negative_prompt".into(), json!(fill(negative, &values)));
        }
        body.extend(overrides);
        let line = json!({
            "custom_id": custom_id.unwrap_or_else(|| format!("row-{i}")),
            "method": "POST",
            "url": ENDPOINT,
            "body": body,
        });
        text.push_str(&line.to_string());
        text.push('\n');
    }
    Ok(text)
}

fn list(names: &BTreeSet<String>) -> String {
    names
        .iter()
        .map(|n| format!("`{{{n}}}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

type Row = (Option<String>, BTreeMap<String, String>, Map<String, Value>);

/// Every combination of the variables' values.
fn combinations(
    template: &BatchTemplate,
    used: &BTreeSet<String>,
    max: usize,
) -> Result<Vec<Row>, ApiError> {
    let given: BTreeSet<String> = template.variables.keys().cloned().collect();
    if let Some(missing) = used.difference(&given).next() {
        return Err(bad(
            "unknown_variable",
            format!("template uses `{{{missing}}}` but template.variables has no `{missing}`"),
        ));
    }
    if let Some(unused) = given.difference(used).next() {
        return Err(bad(
            "unused_variable",
            format!("template.variables.{unused} is not used by the prompt or negative prompt"),
        ));
    }
    if let Some((name, _)) = template.variables.iter().find(|(_, v)| v.is_empty()) {
        return Err(bad(
            "invalid_template",
            format!("template.variables.{name} has no values"),
        ));
    }
    let Some(total) = product(&template.variables, max) else {
        return Err(ApiError::invalid(
            "batch_too_large",
            "template",
            format!(
                "the template's combinations number more than {max}, the most one batch may \
                 have (batches.max_requests)"
            ),
        ));
    };
    let names: Vec<&String> = template.variables.keys().collect();
    let mut rows = Vec::with_capacity(total);
    for mut k in 0..total {
        let mut values = BTreeMap::new();
        // The last variable varies fastest.
        for name in names.iter().rev() {
            let options = &template.variables[*name];
            values.insert((*name).clone(), options[k % options.len()].clone());
            k /= options.len();
        }
        rows.push((None, values, Map::new()));
    }
    Ok(rows)
}

/// One line per explicit row.
fn explicit_rows(
    template: &BatchTemplate,
    used: &BTreeSet<String>,
    max: usize,
) -> Result<Vec<Row>, ApiError> {
    if template.rows.len() > max {
        return Err(ApiError::invalid(
            "batch_too_large",
            "template",
            format!(
                "template.rows has {} rows, more than {max}, the most one batch may have \
                 (batches.max_requests)",
                template.rows.len()
            ),
        ));
    }
    let mut rows = Vec::with_capacity(template.rows.len());
    for (i, row) in template.rows.iter().enumerate() {
        let mut values = BTreeMap::new();
        let mut overrides = Map::new();
        let mut custom_id = None;
        for (key, value) in row {
            if key == "custom_id" {
                let Some(id) = value.as_str() else {
                    return Err(bad(
                        "invalid_template",
                        format!("template.rows[{i}].custom_id must be a string"),
                    ));
                };
                custom_id = Some(id.to_string());
            } else if used.contains(key) {
                let text = match value {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => {
                        return Err(bad(
                            "invalid_template",
                            format!("template.rows[{i}].{key} must be a string or a number"),
                        ));
                    }
                };
                values.insert(key.clone(), text);
            } else if ROW_FIELDS.contains(&key.as_str()) {
                overrides.insert(key.clone(), value.clone());
            } else {
                return Err(bad(
                    "unknown_variable",
                    format!(
                        "template.rows[{i}].{key} is neither a placeholder of the template nor \
                         one of custom_id, {}",
                        ROW_FIELDS.join(", ")
                    ),
                ));
            }
        }
        if let Some(missing) = used.iter().find(|v| !values.contains_key(*v)) {
            return Err(bad(
                "unknown_variable",
                format!("template.rows[{i}] gives no value for `{{{missing}}}`"),
            ));
        }
        rows.push((custom_id, values, overrides));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(value: Value) -> BatchTemplate {
        serde_json::from_value(value).unwrap()
    }

    fn lines(text: &str) -> Vec<Value> {
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn variables_expand_to_every_combination_the_last_fastest() {
        let t = template(json!({
            "prompt": "a {color} {object}, {{literal}}",
            "variables": {"color": ["red", "blue"], "object": ["lamp", "cup", "hat"]},
            "body": {"size": "16x16", "seed": 7},
        }));
        let out = lines(&expand(&t, 100).unwrap());
        let prompts: Vec<&str> = out
            .iter()
            .map(|l| l["body"]["prompt"].as_str().unwrap())
            .collect();
        assert_eq!(
            prompts,
            [
                "a red lamp, {literal}",
                "a red cup, {literal}",
                "a red hat, {literal}",
                "a blue lamp, {literal}",
                "a blue cup, {literal}",
                "a blue hat, {literal}",
            ]
        );
        assert_eq!(out[5]["custom_id"], "row-5");
        assert_eq!(out[5]["body"]["seed"], 7);
        assert_eq!(out[5]["url"], ENDPOINT);
    }

    #[test]
    fn rows_give_values_and_per_row_settings() {
        let t = template(json!({
            "prompt": "a {thing}",
            "negative_prompt": "no {thing} shadow",
            "rows": [{"thing": "cat", "seed": 1, "custom_id": "cat"}, {"thing": 2, "size": "32x32"}],
        }));
        let out = lines(&expand(&t, 100).unwrap());
        assert_eq!(out[0]["custom_id"], "cat");
        assert_eq!(out[0]["body"]["seed"], 1);
        assert_eq!(out[0]["body"]["negative_prompt"], "no cat shadow");
        assert_eq!(out[1]["body"]["prompt"], "a 2");
        assert_eq!(out[1]["body"]["size"], "32x32");
    }

    #[test]
    fn bad_templates_are_refused_naming_the_problem() {
        let code = |v: Value, max: usize| expand(&template(v), max).unwrap_err().code();
        assert_eq!(
            code(json!({"prompt": "a {x}", "variables": {"y": ["1"]}}), 10),
            "unknown_variable"
        );
        assert_eq!(
            code(
                json!({"prompt": "a {x}", "variables": {"x": ["1"], "y": ["2"]}}),
                10
            ),
            "unused_variable"
        );
        assert_eq!(code(json!({"prompt": "a {x}"}), 10), "unknown_variable");
        assert_eq!(code(json!({"prompt": "a {x"}), 10), "invalid_template");
        assert_eq!(code(json!({"prompt": "a }"}), 10), "invalid_template");
        assert_eq!(
            code(
                json!({"prompt": "{a}{b}", "variables": {"a": ["1", "2", "3"], "b": ["1", "2", "3", "4"]}}),
                11
            ),
            "batch_too_large"
        );
        assert_eq!(
            code(
                json!({"prompt": "{a}", "rows": [{"a": "1", "colour": "x"}]}),
                10
            ),
            "unknown_variable"
        );
        assert_eq!(
            code(json!({"prompt": "{a}", "rows": [{"seed": 1}]}), 10),
            "unknown_variable"
        );
        assert_eq!(
            code(json!({"prompt": "x", "body": {"prompt": "y"}}), 10),
            "invalid_template"
        );
    }
}
