//! The plan codec Strata installs on every process of a cluster: Strata's own plan
//! nodes under a tag byte protobuf cannot start with, everything else by Ballista's codec.

use std::sync::Arc;

use ballista_core::serde::BallistaPhysicalExtensionCodec;
use ballista_core::serde::protobuf::BallistaPhysicalPlanNode;
use ballista_core::serde::protobuf::ballista_physical_plan_node::PhysicalPlanType;
use datafusion::arrow::datatypes::Schema;
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

use strata_access::{HashPii, PolicyBoundaryExec, masking_functions};
use strata_language::OnViolation;
use strata_storage::storage_schema;

use crate::expectations::{Checker, Rule};
use crate::landing::LandingScanExec;
use crate::write::{FileFormat, WriteFilesExec, WriteSpec};

/// A shuffle reader with each map task's output listed once, from the newest attempt;
/// none when the node is not a reader or lists nothing twice.
///
/// Ballista names a map output by the id of the task that wrote it, and a stage rolled
/// back after a lost executor numbers its tasks from 0 again, while the stage reading
/// it keeps what the first attempt's tasks on the surviving executors reported. Where
/// an id is listed twice, the later one is the newer attempt's. This is a safety net for
/// queries only: a Strata job that loses an executor is cancelled and run again whole
/// (see the scheduler's cluster state), because a second attempt with fewer tasks leaves
/// first-attempt outputs that no id pairs up.
fn newest_shuffle_locations(buf: &[u8]) -> Option<Vec<u8>> {
    let mut node = BallistaPhysicalPlanNode::decode(buf).ok()?;
    let partitions = match node.physical_plan_type.as_mut()? {
        PhysicalPlanType::ShuffleReader(reader) => &mut reader.partition,
        PhysicalPlanType::RangeShuffleReader(reader) => &mut reader.partition,
        _ => return None,
    };
    let mut dropped = 0;
    for partition in partitions.iter_mut() {
        let listed = partition.location.len();
        let mut seen = std::collections::HashSet::new();
        let mut kept: Vec<_> = partition
            .location
            .drain(..)
            .rev()
            .filter(|location| {
                let output = location.partition_id.as_ref().map(|id| id.partition_id);
                seen.insert((output, location.map_partition_id))
            })
            .collect();
        kept.reverse();
        dropped += listed - kept.len();
        partition.location = kept;
    }
    if dropped == 0 {
        return None;
    }
    tracing::warn!(
        "a shuffle reader listed {dropped} map output(s) of an earlier attempt too; reading only the newest"
    );
    Some(node.encode_to_vec())
}

/// Field number 0 is invalid in protobuf, so no Ballista or DataFusion message starts with
/// a zero byte; Strata's nodes start with one, then a byte naming the node.
const STRATA_TAG: u8 = 0;
const WRITE_FILES: u8 = 1;
/// Tag 2 was a compressed DataFusion scan, before landing files were read by Strata.
const LANDING_SCAN: u8 = 3;
/// A table's policy boundary ([`PolicyBoundaryExec`]), followed by the table's name.
const POLICY_BOUNDARY: u8 = 4;

/// Encodes Strata's nodes itself and hands the rest to Ballista's codec.
#[derive(Debug, Default)]
pub struct StrataPhysicalCodec {
    ballista: BallistaPhysicalExtensionCodec,
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
        buf.extend([STRATA_TAG, WRITE_FILES]);
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
        match buf {
            [STRATA_TAG, WRITE_FILES, message @ ..] => self.decode_write(message, inputs, ctx),
            [STRATA_TAG, LANDING_SCAN, message @ ..] => decode_landing_scan(message),
            [STRATA_TAG, POLICY_BOUNDARY, table @ ..] => {
                let table = String::from_utf8(table.to_vec()).map_err(|_| {
                    DataFusionError::Internal("a policy boundary's table is not text".into())
                })?;
                let [input] = inputs else {
                    return Err(DataFusionError::Internal(
                        "a policy boundary has one child".into(),
                    ));
                };
                Ok(Arc::new(PolicyBoundaryExec::new(Arc::clone(input), table)))
            }
            [STRATA_TAG, ..] => Err(DataFusionError::Internal(format!(
                "an unknown Strata plan node {:?}; is every process on one Strata version?",
                &buf[..buf.len().min(8)]
            ))),
            _ => match newest_shuffle_locations(buf) {
                Some(deduplicated) => {
                    self.ballista
                        .try_decode(&deduplicated, inputs, ctx, proto_converter)
                }
                None => self.ballista.try_decode(buf, inputs, ctx, proto_converter),
            },
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        if let Some(write) = node.downcast_ref::<WriteFilesExec>() {
            return self.encode_write(write, buf);
        }
        if let Some(scan) = node.downcast_ref::<LandingScanExec>() {
            buf.extend([STRATA_TAG, LANDING_SCAN]);
            return encode_landing_scan(scan, buf);
        }
        if let Some(boundary) = node.downcast_ref::<PolicyBoundaryExec>() {
            buf.extend([STRATA_TAG, POLICY_BOUNDARY]);
            buf.extend(boundary.table().as_bytes());
            return Ok(());
        }
        self.ballista.try_encode(node, buf, proto_converter)
    }

    /// `hash_pii` carries its warehouse's key to the executors inside the plan, which
    /// travels between Strata's processes only (never shown by EXPLAIN).
    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        if let Some(hash) = node.inner().downcast_ref::<HashPii>() {
            buf.extend(hash.key());
            return Ok(());
        }
        self.ballista.try_encode_udf(node, buf)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        if let Some(hash) = HashPii::with_key(buf).filter(|_| name == HashPii::NAME) {
            return Ok(Arc::new(ScalarUDF::new_from_impl(hash)));
        }
        match strata_udfs::scalar_functions()
            .into_iter()
            .chain(masking_functions(None))
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

fn encode_landing_scan(scan: &LandingScanExec, buf: &mut Vec<u8>) -> Result<()> {
    let schema = datafusion_proto::protobuf::Schema::try_from(scan.file_schema().as_ref())?;
    let message = proto::LandingScanNode {
        parts_json: to_json(&scan.parts())?,
        schema: schema.encode_to_vec(),
        projection: scan
            .projection()
            .map(|indices| indices.iter().map(|index| *index as u32).collect())
            .unwrap_or_default(),
        projected: scan.projection().is_some(),
        read_spec_json: to_json(scan.read_spec())?,
        rejects_json: match scan.rejects() {
            Some(target) => to_json(target)?,
            None => String::new(),
        },
        batch_size: scan.batch_size() as u64,
    };
    message
        .encode(buf)
        .map_err(|error| DataFusionError::Internal(format!("encoding LandingScanExec: {error}")))
}

fn decode_landing_scan(buf: &[u8]) -> Result<Arc<dyn ExecutionPlan>> {
    let message = proto::LandingScanNode::decode(buf)
        .map_err(|error| DataFusionError::Internal(format!("decoding LandingScanExec: {error}")))?;
    let schema =
        datafusion_proto::protobuf::Schema::decode(message.schema.as_slice()).map_err(|error| {
            DataFusionError::Internal(format!("decoding a landing schema: {error}"))
        })?;
    let schema = Schema::try_from(&schema)?;
    let rejects = if message.rejects_json.is_empty() {
        None
    } else {
        Some(from_json(&message.rejects_json)?)
    };
    Ok(Arc::new(LandingScanExec::try_new(
        from_json(&message.parts_json)?,
        Arc::new(schema),
        message.projected.then(|| {
            message
                .projection
                .iter()
                .map(|index| *index as usize)
                .collect()
        }),
        from_json(&message.read_spec_json)?,
        rejects,
        message.batch_size as usize,
    )?))
}

fn to_json(value: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|error| DataFusionError::Internal(format!("encoding a landing scan: {error}")))
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text)
        .map_err(|error| DataFusionError::Internal(format!("decoding a landing scan: {error}")))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::expressions::{BinaryExpr, col, lit};
    use datafusion::physical_plan::empty::EmptyExec;
    use datafusion::prelude::SessionContext;
    use datafusion_proto::physical_plan::{AsExecutionPlan, DefaultPhysicalProtoConverter};
    use datafusion_proto::protobuf::PhysicalPlanNode;

    use super::*;

    #[test]
    fn a_shuffle_reader_reads_each_map_output_once_from_its_newest_attempt() {
        use ballista_core::serde::protobuf::{
            ExecutorMetadata, PartitionId, PartitionLocation, ShuffleReaderExecNode,
            ShuffleReaderPartition,
        };
        let location = |output: u32, map: u32, executor: &str| PartitionLocation {
            map_partition_id: map,
            partition_id: Some(PartitionId {
                job_id: "j".into(),
                stage_id: 3,
                partition_id: output,
            }),
            executor_meta: Some(ExecutorMetadata {
                id: executor.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let reader = |locations: Vec<PartitionLocation>| BallistaPhysicalPlanNode {
            physical_plan_type: Some(PhysicalPlanType::ShuffleReader(ShuffleReaderExecNode {
                partition: vec![ShuffleReaderPartition {
                    location: locations,
                }],
                stage_id: 5,
                ..Default::default()
            })),
        };
        let whole = reader(vec![location(0, 0, "a"), location(0, 1, "a")]);
        assert_eq!(newest_shuffle_locations(&whole.encode_to_vec()), None);

        // Map partition 1 from the first attempt on `a`, then again from the second on `b`.
        let twice = reader(vec![
            location(0, 0, "a"),
            location(0, 1, "a"),
            location(0, 1, "b"),
        ]);
        let read = newest_shuffle_locations(&twice.encode_to_vec()).unwrap();
        let read = BallistaPhysicalPlanNode::decode(read.as_slice()).unwrap();
        let Some(PhysicalPlanType::ShuffleReader(read)) = read.physical_plan_type else {
            panic!("not a reader");
        };
        let kept: Vec<(u32, String)> = read.partition[0]
            .location
            .iter()
            .map(|l| (l.map_partition_id, l.executor_meta.clone().unwrap().id))
            .collect();
        assert_eq!(kept, [(0, "a".to_owned()), (1, "b".to_owned())]);
    }

    #[test]
    fn a_writer_crosses_the_wire_whole() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
        let rule = Rule {
            name: "positive".into(),
            on_violation: OnViolation::Quarantine,
            predicate: Arc::new(BinaryExpr::new(
                col("n", &schema).unwrap(),
                Operator::Gt,
                lit(0i64),
            )),
        };
        let spec = WriteSpec {
            format: FileFormat::Delta,
            table_dir: "/wh/enriched/scores".into(),
            prefix: String::new(),
            partition_columns: vec!["n".into()],
            quarantine_dir: Some("/wh/enriched/scores__quarantine".into()),
        };
        let writer = WriteFilesExec::new(
            Arc::new(EmptyExec::new(Arc::clone(&schema))),
            spec,
            Checker::from_rules(vec![rule], &schema, "run-1"),
        );
        let codec = StrataPhysicalCodec::default();
        let encoded = PhysicalPlanNode::try_from_physical_plan(Arc::new(writer), &codec).unwrap();
        let bytes = encoded.encode_to_vec();
        let ctx = SessionContext::new();
        let decoded = PhysicalPlanNode::decode(bytes.as_slice())
            .unwrap()
            .try_into_physical_plan(&ctx.task_ctx(), &codec)
            .unwrap();
        let decoded = decoded.downcast_ref::<WriteFilesExec>().expect("a writer");
        let spec = decoded.spec();
        assert_eq!(spec.format, FileFormat::Delta);
        assert_eq!(spec.table_dir, "/wh/enriched/scores");
        assert_eq!(spec.partition_columns, ["n"]);
        assert_eq!(
            spec.quarantine_dir.as_deref(),
            Some("/wh/enriched/scores__quarantine")
        );
        assert_eq!(decoded.checker().run_id(), "run-1");
        let rules = decoded.checker().rules();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].name, "positive");
        assert_eq!(rules[0].on_violation, OnViolation::Quarantine);
        assert_eq!(rules[0].predicate.to_string(), "n@0 > 0");
    }

    #[test]
    fn a_landing_scan_crosses_the_wire_with_its_parts_policy_and_rejects_target() {
        use strata_storage::landing::{BadRowPolicy, Compression, CsvLayout, Limit, RowFormat};

        use crate::landing::{FilePart, ReadSpec, RejectsTarget};

        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let read = ReadSpec {
            format: RowFormat::Csv(CsvLayout {
                comment: Some(b'#'),
                ..CsvLayout::default()
            }),
            compression: Compression::Gzip,
            policy: BadRowPolicy {
                limit: Limit::Share(0.02),
                ..BadRowPolicy::default()
            },
            store: strata_storage::StoreOptions::default(),
            kafka: Some(crate::landing::KafkaRead {
                location: strata_kafka::KafkaLocation::parse("kafka://b:9092/events").unwrap(),
                options: strata_kafka::KafkaOptions::from_options([
                    ("sasl.password", "env:KAFKA_PASSWORD"),
                    ("max_messages_per_partition", "7"),
                ])
                .unwrap(),
            }),
            decrypt: strata_decrypt::Decryption::from_options([
                ("decrypt.key_file", "/etc/strata/keys/landing.asc"),
                ("decrypt.passphrase_env", "LANDING_PASSPHRASE"),
            ])
            .unwrap(),
        };
        let parts = vec![
            FilePart {
                path: "/wh/landing/a.csv".into(),
                range: Some((0, 10)),
            },
            FilePart {
                path: "/wh/landing/a.csv".into(),
                range: Some((10, 20)),
            },
        ];
        let target = RejectsTarget {
            table_dir: "/wh/raw/a".into(),
            prefix: "part-run-1-00000".into(),
            run_id: "run-1".into(),
            erased: vec!["C12".into()],
        };
        let scan = LandingScanExec::try_new(
            parts.clone(),
            Arc::clone(&schema),
            Some(vec![1]),
            read.clone(),
            Some(target.clone()),
            512,
        )
        .unwrap();
        let codec = StrataPhysicalCodec::default();
        let encoded = PhysicalPlanNode::try_from_physical_plan(Arc::new(scan), &codec).unwrap();
        let ctx = SessionContext::new();
        let decoded = PhysicalPlanNode::decode(encoded.encode_to_vec().as_slice())
            .unwrap()
            .try_into_physical_plan(&ctx.task_ctx(), &codec)
            .unwrap();
        let decoded = decoded
            .downcast_ref::<LandingScanExec>()
            .expect("a landing scan");
        assert_eq!(decoded.parts(), parts.as_slice());
        assert_eq!(decoded.file_schema(), &schema);
        assert_eq!(decoded.projection(), Some(&vec![1]));
        assert_eq!(decoded.read_spec(), &read);
        assert_eq!(decoded.rejects(), Some(&target));
        assert_eq!(decoded.batch_size(), 512);
        assert_eq!(decoded.schema().fields().len(), 1, "projected");
    }

    #[test]
    fn an_unknown_strata_node_names_the_version_problem() {
        let codec = StrataPhysicalCodec::default();
        let ctx = SessionContext::new();
        let error = codec
            .try_decode(
                &[STRATA_TAG, 99],
                &[],
                &ctx.task_ctx(),
                &DefaultPhysicalProtoConverter {},
            )
            .unwrap_err();
        assert!(error.to_string().contains("one Strata version"), "{error}");
    }
}
