//! Checks shared by the datasources' property parsers, with errors that name the property.

use serde_json::{Map, Value as Json};

use super::{Consumption, SourceError};

/// The error of datasource `name`'s `properties.<property>`.
pub(crate) fn property_error(
    name: &str,
    property: &str,
    message: impl std::fmt::Display,
) -> SourceError {
    SourceError::Config {
        name: name.to_string(),
        message: format!("properties.{property}: {message}"),
    }
}

/// What a list of names is and what each name must be, for [`name_list`]'s errors.
pub(crate) struct NameList<'a> {
    /// The property holding the list.
    pub property: &'a str,
    /// Said when it is missing, e.g. "the Kafka topics to consume".
    pub holds: &'a str,
    /// Said when it is not a non-empty array, e.g. "topic names".
    pub of: &'a str,
    /// Whether one name is valid.
    pub valid: fn(&str) -> bool,
    /// Said of an invalid name.
    pub each_must_be: &'a str,
}

/// The non-empty array of distinct names `list.property` of datasource `name`; when the
/// properties do not give it, the channels its routes read (`consumption.upstream`), or none
/// when no route reads it.
pub(crate) fn name_list(
    name: &str,
    props: &Map<String, Json>,
    list: &NameList<'_>,
    consumption: &Consumption,
) -> Result<Vec<String>, SourceError> {
    let items = match props.get(list.property) {
        None if consumption.unread => return Ok(Vec::new()),
        None if !consumption.upstream.is_empty() => {
            return routes_upstream(name, list, &consumption.upstream)
        }
        None => {
            return Err(property_error(
                name,
                list.property,
                format!("required ({})", list.holds),
            ))
        }
        Some(Json::Array(items)) if !items.is_empty() => items,
        Some(_) => {
            return Err(property_error(
                name,
                list.property,
                format!("must be a non-empty array of {}", list.of),
            ))
        }
    };
    let mut names: Vec<String> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let property = format!("{}[{i}]", list.property);
        match item.as_str() {
            Some(item) if (list.valid)(item) => {
                if names.iter().any(|n| n == item) {
                    return Err(property_error(
                        name,
                        &property,
                        format!("`{item}` is listed twice"),
                    ));
                }
                names.push(item.to_string());
            }
            _ => return Err(property_error(name, &property, list.each_must_be)),
        }
    }
    Ok(names)
}

/// The routes' upstream as the list `list.property`: each must be a valid name, and not a
/// pattern (a broker reads named topics or keys, which the routes' patterns then select from).
fn routes_upstream(
    name: &str,
    list: &NameList<'_>,
    upstream: &[String],
) -> Result<Vec<String>, SourceError> {
    for channel in upstream {
        let why = if crate::subject::is_pattern(channel) {
            format!("is a pattern, not one of the {}", list.of)
        } else if !(list.valid)(channel) {
            list.each_must_be.to_string()
        } else {
            continue;
        };
        return Err(property_error(
            name,
            list.property,
            format!("not given, and the routes' upstream `{channel}` cannot stand for it: {why}"),
        ));
    }
    Ok(upstream.to_vec())
}

/// A datasource of `kind` named `name` with `properties`, for the parsers' unit tests.
#[cfg(test)]
pub(crate) fn datasource(
    kind: crate::config::DatasourceKind,
    name: &str,
    properties: Json,
) -> crate::config::Datasource {
    crate::config::Datasource {
        version: 1,
        kind,
        name: name.to_string(),
        properties: properties.as_object().cloned().unwrap(),
        regions: Vec::new(),
    }
}
