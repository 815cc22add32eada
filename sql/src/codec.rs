//! The plan codec Strata installs on every process of a cluster: Strata's own plan
//! nodes under a tag byte protobuf cannot start with, everything else by Ballista's codec.

use std::sync::Arc;

use ballista_core::serde::BallistaPhysicalExtensionCodec;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::physical_plan::from_proto::parse_physical_expr;
use datafusion_proto::physical_plan::to_proto::serialize_physical_expr;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use datafusion_proto::protobuf::PhysicalExprNode;
use prost::Message;
use strata_proto::plan as proto;

use crate::expectations::{Checker, Rule};
use crate::language::OnViolation;
use crate::storage::avro_sink::storage_schema;
use crate::storage::write_files::{FileFormat, WriteFilesExec, WriteSpec};

/// Field number 0 is invalid in protobuf, so no Ballista or DataFusion message starts with it.
const STRATA_TAG: u8 = 0;

/// Encodes Strata's nodes itself and hands the rest to Ballista's codec.
#[derive(Debug)]
pub struct StrataPhysicalCodec {
    ballista: BallistaPhysicalExtensionCodec,
}

impl Default for StrataPhysicalCodec {
    fn default() -> Self {
        Self {
            ballista: BallistaPhysicalExtensionCodec::default(),
        }
    }
}

impl StrataPhysicalCodec {
    /// The codec, shared, as Ballista's configuration wants it.
    pub fn shared() -> Arc<dyn PhysicalExtensionCodec> {
        Arc::new(Self::default())
    }

    fn encode_write(&self, node: &WriteFilesExec, buf: &mut Vec<u8>) -> Result<()> {
        let spec = node.spec();
        let expectations = node
            .checker()
            .rules()
            .iter()
            .map(|rule| {
                Ok(proto::ExpectationRule {
                    name: rule.name.clone(),
                    on_violation: match rule.on_violation {
                        OnViolation::DropRow => proto::Violation::DropRow,
                        OnViolation::Quarantine => proto::Violation::Quarantine,
                        OnViolation::Fail => proto::Violation::Fail,
                    } as i32,
                    predicate: serialize_physical_expr(&rule.predicate, self)?.encode_to_vec(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let message = proto::WriteFilesNode {
            format: match spec.format {
                FileFormat::Avro => proto::FileFormat::Avro,
                FileFormat::Delta => proto::FileFormat::Delta,
            } as i32,
            table_dir: spec.table_dir.clone(),
            prefix: spec.prefix.clone(),
            partition_columns: spec.partition_columns.clone(),
            expectations,
            run_id: node.checker().run_id().to_owned(),
            quarantine_dir: spec.quarantine_dir.clone().unwrap_or_default(),
        };
        buf.push(STRATA_TAG);
        message
            .encode(buf)
            .map_err(|error| DataFusionError::Internal(format!("encoding WriteFilesExec: {error}")))
    }

    fn decode_write(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let message = proto::WriteFilesNode::decode(buf).map_err(|error| {
            DataFusionError::Internal(format!("decoding WriteFilesExec: {error}"))
        })?;
        let [input] = inputs else {
            return Err(DataFusionError::Internal(
                "WriteFilesExec takes exactly one input".into(),
            ));
        };
        let schema = storage_schema(&input.schema());
        let rules = message
            .expectations
            .iter()
            .map(|rule| {
                let node =
                    PhysicalExprNode::decode(rule.predicate.as_slice()).map_err(|error| {
                        DataFusionError::Internal(format!(
                            "decoding expectation {}: {error}",
                            rule.name
                        ))
                    })?;
                Ok(Rule {
                    name: rule.name.clone(),
                    on_violation: match rule.on_violation() {
                        proto::Violation::DropRow => OnViolation::DropRow,
                        proto::Violation::Fail => OnViolation::Fail,
                        proto::Violation::Quarantine | proto::Violation::Unspecified => {
                            OnViolation::Quarantine
                        }
                    },
                    predicate: parse_physical_expr(&node, ctx, &schema, self)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let format = match message.format() {
            proto::FileFormat::Avro => FileFormat::Avro,
            proto::FileFormat::Delta => FileFormat::Delta,
            proto::FileFormat::Unspecified => {
                return Err(DataFusionError::Internal(
                    "WriteFilesExec without a file format".into(),
                ));
            }
        };
        let spec = WriteSpec {
            format,
            table_dir: message.table_dir,
            prefix: message.prefix,
            partition_columns: message.partition_columns,
            quarantine_dir: Some(message.quarantine_dir).filter(|dir| !dir.is_empty()),
        };
        let checker = Checker::from_rules(rules, &schema, &message.run_id);
        Ok(Arc::new(WriteFilesExec::new(
            Arc::clone(input),
            spec,
            checker,
        )))
    }
}

impl PhysicalExtensionCodec for StrataPhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match buf.split_first() {
            Some((&STRATA_TAG, message)) => self.decode_write(message, inputs, ctx),
            _ => self.ballista.try_decode(buf, inputs, ctx, proto_converter),
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        match node.downcast_ref::<WriteFilesExec>() {
            Some(write) => self.encode_write(write, buf),
            None => self.ballista.try_encode(node, buf, proto_converter),
        }
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        match strata_udfs::scalar_functions()
            .into_iter()
            .find(|udf| udf.name() == name)
        {
            Some(udf) => Ok(udf),
            None => self.ballista.try_decode_udf(name, buf),
        }
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        match strata_udfs::aggregate_functions()
            .into_iter()
            .find(|udaf| udaf.name() == name)
        {
            Some(udaf) => Ok(udaf),
            None => self.ballista.try_decode_udaf(name, buf),
        }
    }
}
