//! Creates the table of `infra/template.yaml` on a local DynamoDB (the local stack's
//! dynoxide). Usage: create-table <endpoint> <table-name>. An existing table is kept.

use support::table::TableDefinition;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut args = std::env::args().skip(1);
    let (Some(endpoint), Some(name)) = (args.next(), args.next()) else {
        return Err("usage: create-table <endpoint> <table-name>".into());
    };
    let client = support::dynamodb_client(&endpoint, None);
    let existing = client.list_tables().send().await?;
    if existing.table_names().iter().any(|t| t == &name) {
        println!("table {name} already exists at {endpoint}");
        return Ok(());
    }
    TableDefinition::from_repo()?.create(&client, &name).await?;
    println!("created table {name} at {endpoint} from infra/template.yaml");
    Ok(())
}
