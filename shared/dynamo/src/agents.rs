//! Per-agent runtime overrides (reference 000: the org's runtime applies to every agent,
//! and "you can change it later per agent"): `ORG#<org>/AGENT#<agent>`. An agent without
//! an item runs the org's runtime.

use agent_credits_domain::{AgentId, MemberId, Org, OrgId, Runtime, StoreError};
use aws_sdk_dynamodb::types::{Put, ReturnValue, TransactWriteItem};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::attr::{Item, Reader, s};
use crate::items::{self, key, org_pk, timestamp};
use crate::orgs::{OrgStore, PROFILE_SK, cancelled_on_condition, revised};
use crate::store::{get_consistent, query_prefix, sdk_error};

const AGENT_PREFIX: &str = "AGENT#";

fn agent_sk(agent: &AgentId) -> String {
    format!("{AGENT_PREFIX}{agent}")
}

/// An agent whose runtime differs from the org's choice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentRuntime {
    pub agent: AgentId,
    pub runtime: Runtime,
    pub updated_at: DateTime<Utc>,
    pub updated_by: MemberId,
}

fn from_item(item: &Item) -> Result<AgentRuntime, StoreError> {
    let r = Reader::new(item);
    let bad = |what: &str| r.corrupt(what.to_owned());
    Ok(AgentRuntime {
        agent: AgentId::parse(r.s("agent")?).map_err(|_| bad("bad agent id"))?,
        runtime: Runtime::parse(r.s("runtime")?).ok_or_else(|| bad("unknown runtime"))?,
        updated_at: items::parse_time(&r, "updated_at")?,
        updated_by: MemberId::parse(r.s("updated_by")?).map_err(|_| bad("bad member id"))?,
    })
}

impl OrgStore {
    /// Sets (or replaces) the runtime of one agent of `org` as it was read (the rules were
    /// checked against it), moving the org's revision on; `None` when its billing mode or
    /// revision moved meanwhile, and nothing is written.
    pub async fn set_agent_runtime(
        &self,
        org: &Org,
        agent: &AgentId,
        runtime: Runtime,
        by: &MemberId,
        now: DateTime<Utc>,
    ) -> Result<Option<AgentRuntime>, StoreError> {
        let mut item = key(org_pk(&org.id), agent_sk(agent));
        item.extend([
            ("type".to_owned(), s("agent_runtime")),
            ("agent".to_owned(), s(agent.as_str())),
            ("runtime".to_owned(), s(runtime.as_str())),
            ("updated_at".to_owned(), timestamp(now)),
            ("updated_by".to_owned(), s(by.as_str())),
        ]);
        let put = Put::builder()
            .table_name(&*self.table)
            .set_item(Some(item.clone()))
            .build()
            .map_err(|e| StoreError::Rejected(e.to_string()))?;
        let sent = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(revised(org).update(&self.table, key(org_pk(&org.id), PROFILE_SK))?)
            .send()
            .await;
        match sent {
            Ok(_) => from_item(&item).map(Some),
            Err(e) if cancelled_on_condition(&e) => Ok(None),
            Err(e) => Err(sdk_error(e)),
        }
    }

    /// The agent's own runtime, if it has one.
    pub async fn agent_runtime(
        &self,
        org: &OrgId,
        agent: &AgentId,
    ) -> Result<Option<AgentRuntime>, StoreError> {
        get_consistent(&self.client, &self.table, key(org_pk(org), agent_sk(agent)))
            .await?
            .as_ref()
            .map(from_item)
            .transpose()
    }

    /// Every agent of the org with its own runtime.
    pub async fn agent_runtimes(&self, org: &OrgId) -> Result<Vec<AgentRuntime>, StoreError> {
        query_prefix(&self.client, &self.table, org_pk(org), AGENT_PREFIX)
            .await?
            .iter()
            .map(from_item)
            .collect()
    }

    /// Puts the agent back on the org's runtime. `false` when it had no runtime of its own.
    pub async fn clear_agent_runtime(&self, org: &OrgId, agent: &AgentId) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&*self.table)
            .set_key(Some(key(org_pk(org), agent_sk(agent))))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }
}
