//! The table, as `infra/template.yaml` defines it. Tests and the local stack create their
//! tables from the template's `AWS::DynamoDB::Table` resource, so the definition exists
//! once.

use std::path::Path;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType, TimeToLiveSpecification,
};
use serde_yaml::Value;

/// The parts of the table definition that matter to DynamoDB's `CreateTable`.
#[derive(Debug, Clone)]
pub struct TableDefinition {
    pub attributes: Vec<AttributeDefinition>,
    pub keys: Vec<KeySchemaElement>,
    pub indexes: Vec<GlobalSecondaryIndex>,
    pub ttl_attribute: Option<String>,
    /// The stream's view type (`NEW_AND_OLD_IMAGES`), when the table has a stream.
    pub stream_view: Option<String>,
}

pub type Error = Box<dyn std::error::Error + Send + Sync>;

fn field<'a>(v: &'a Value, name: &str) -> Result<&'a Value, Error> {
    v.get(name)
        .ok_or_else(|| format!("template: {name} missing").into())
}

fn text<'a>(v: &'a Value, name: &str) -> Result<&'a str, Error> {
    field(v, name)?
        .as_str()
        .ok_or_else(|| format!("template: {name} is not a string").into())
}

fn list<'a>(v: &'a Value, name: &str) -> Result<&'a Vec<Value>, Error> {
    field(v, name)?
        .as_sequence()
        .ok_or_else(|| format!("template: {name} is not a list").into())
}

fn key_schema(v: &Value) -> Result<Vec<KeySchemaElement>, Error> {
    list(v, "KeySchema")?
        .iter()
        .map(|k| {
            Ok(KeySchemaElement::builder()
                .attribute_name(text(k, "AttributeName")?)
                .key_type(KeyType::from(text(k, "KeyType")?))
                .build()?)
        })
        .collect()
}

impl TableDefinition {
    /// Reads `infra/template.yaml` of this repository.
    pub fn from_repo() -> Result<TableDefinition, Error> {
        TableDefinition::from_template(&crate::repo_root().join("infra/template.yaml"))
    }

    pub fn from_template(path: &Path) -> Result<TableDefinition, Error> {
        let doc: Value = serde_yaml::from_str(&std::fs::read_to_string(path)?)?;
        let resources = field(&doc, "Resources")?
            .as_mapping()
            .ok_or("template: Resources is not a mapping")?;
        let mut tables = resources
            .values()
            .filter(|r| r.get("Type").and_then(Value::as_str) == Some("AWS::DynamoDB::Table"));
        let table = tables.next().ok_or("template: no AWS::DynamoDB::Table")?;
        if tables.next().is_some() {
            return Err("template: more than one table; the design has one".into());
        }
        let props = field(table, "Properties")?;
        let attributes = list(props, "AttributeDefinitions")?
            .iter()
            .map(|a| {
                Ok(AttributeDefinition::builder()
                    .attribute_name(text(a, "AttributeName")?)
                    .attribute_type(ScalarAttributeType::from(text(a, "AttributeType")?))
                    .build()?)
            })
            .collect::<Result<_, Error>>()?;
        let indexes = match props.get("GlobalSecondaryIndexes") {
            None => vec![],
            Some(_) => list(props, "GlobalSecondaryIndexes")?
                .iter()
                .map(|g| {
                    let projection = field(g, "Projection")?;
                    let non_key = match projection.get("NonKeyAttributes") {
                        None => None,
                        Some(_) => Some(
                            list(projection, "NonKeyAttributes")?
                                .iter()
                                .map(|a| {
                                    a.as_str()
                                        .map(str::to_owned)
                                        .ok_or("NonKeyAttributes: not a string")
                                })
                                .collect::<Result<Vec<_>, _>>()?,
                        ),
                    };
                    Ok(GlobalSecondaryIndex::builder()
                        .index_name(text(g, "IndexName")?)
                        .set_key_schema(Some(key_schema(g)?))
                        .projection(
                            Projection::builder()
                                .projection_type(ProjectionType::from(text(projection, "ProjectionType")?))
                                .set_non_key_attributes(non_key)
                                .build(),
                        )
                        .build()?)
                })
                .collect::<Result<_, Error>>()?,
        };
        let ttl_attribute = match props.get("TimeToLiveSpecification") {
            Some(ttl) if ttl.get("Enabled").and_then(Value::as_bool) == Some(true) => {
                Some(text(ttl, "AttributeName")?.to_owned())
            }
            _ => None,
        };
        let stream_view = match props.get("StreamSpecification") {
            Some(spec) => Some(text(spec, "StreamViewType")?.to_owned()),
            None => None,
        };
        Ok(TableDefinition {
            attributes,
            keys: key_schema(props)?,
            indexes,
            ttl_attribute,
            stream_view,
        })
    }

    /// The same table without its stream (see `support::fresh_table`).
    pub fn without_stream(mut self) -> TableDefinition {
        self.stream_view = None;
        self
    }

    /// Creates the table under `name` (on-demand, with its stream, as in the template) and
    /// turns on TTL.
    pub async fn create(&self, client: &Client, name: &str) -> Result<(), Error> {
        client
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .set_attribute_definitions(Some(self.attributes.clone()))
            .set_key_schema(Some(self.keys.clone()))
            .set_global_secondary_indexes((!self.indexes.is_empty()).then(|| self.indexes.clone()))
            .set_stream_specification(
                self.stream_view
                    .as_deref()
                    .map(|view| {
                        StreamSpecification::builder()
                            .stream_enabled(true)
                            .stream_view_type(StreamViewType::from(view))
                            .build()
                    })
                    .transpose()?,
            )
            .send()
            .await?;
        if let Some(attr) = &self.ttl_attribute {
            client
                .update_time_to_live()
                .table_name(name)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .attribute_name(attr)
                        .enabled(true)
                        .build()?,
                )
                .send()
                .await?;
        }
        Ok(())
    }
}
