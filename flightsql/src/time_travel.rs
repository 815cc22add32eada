//! `VERSION AS OF n` on a table, parsed by sqlparser into its own `TableVersion` and
//! carried to the catalog in the table's name, because DataFusion's planner ignores
//! table versions.

use std::any::TypeId;
use std::ops::ControlFlow;

use datafusion::sql::parser::{DFParser, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{
    Expr, Ident, ObjectNamePart, TableFactor, TableVersion, Value, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::{Dialect, GenericDialect};
use tonic::Status;

use strata_access::catalog::versioned_name;

/// DataFusion's generic dialect, plus table versions (`VERSION AS OF`, as Databricks
/// writes them).
///
/// It answers every question as the generic dialect does, and says it is that
/// dialect, so the parser's dialect checks treat it as one.
#[derive(Debug, Default)]
pub(crate) struct TimeTravelDialect;

/// Asks the generic dialect each of these questions.
macro_rules! as_generic {
    ($($question:ident),* $(,)?) => {
        $(fn $question(&self) -> bool {
            GenericDialect.$question()
        })*
    };
}

impl Dialect for TimeTravelDialect {
    fn dialect(&self) -> TypeId {
        TypeId::of::<GenericDialect>()
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        GenericDialect.is_delimited_identifier_start(ch)
    }

    fn is_identifier_start(&self, ch: char) -> bool {
        GenericDialect.is_identifier_start(ch)
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        GenericDialect.is_identifier_part(ch)
    }

    fn supports_table_versioning(&self) -> bool {
        true
    }

    as_generic!(
        supports_unicode_string_literal,
        supports_partition_by_after_order_by,
        supports_array_join_syntax,
        supports_group_by_expr,
        supports_group_by_with_modifier,
        supports_left_associative_joins_without_parens,
        supports_connect_by,
        supports_match_recognize,
        supports_pipe_operator,
        supports_start_transaction_modifier,
        supports_window_function_null_treatment_arg,
        supports_dictionary_syntax,
        supports_window_clause_named_window_reference,
        supports_parenthesized_set_variables,
        supports_select_wildcard_except,
        support_map_literal_syntax,
        allow_extract_custom,
        allow_extract_single_quotes,
        supports_extract_comma_syntax,
        supports_create_view_comment_syntax,
        supports_parens_around_table_factor,
        supports_values_as_table_factor,
        supports_create_index_with_clause,
        supports_explain_with_utility_options,
        supports_limit_comma,
        supports_update_order_by,
        supports_from_first_select,
        supports_projection_trailing_commas,
        supports_asc_desc_in_column_definition,
        supports_try_convert,
        supports_bitwise_shift_operators,
        supports_comment_on,
        supports_load_extension,
        supports_named_fn_args_with_assignment_operator,
        supports_struct_literal,
        supports_empty_projections,
        supports_nested_comments,
        supports_multiline_comment_hints,
        supports_user_host_grantee,
        supports_string_escape_constant,
        supports_array_typedef_with_brackets,
        supports_match_against,
        supports_set_names,
        supports_comma_separated_set_assignments,
        supports_filter_during_aggregation,
        supports_select_wildcard_exclude,
        supports_data_type_signed_suffix,
        supports_interval_options,
        supports_quote_delimited_string,
        supports_select_wildcard_replace,
        supports_select_wildcard_ilike,
        supports_select_wildcard_rename,
        supports_optimize_table,
        supports_install,
        supports_detach,
        supports_prewhere,
        supports_with_fill,
        supports_limit_by,
        supports_interpolate,
        supports_settings,
        supports_select_format,
        supports_comment_optimizer_hint,
        supports_constraint_keyword_without_name,
        supports_key_column_option,
        supports_comma_separated_trim,
        supports_cte_without_as,
        supports_select_item_multi_column_alias,
        supports_xml_expressions,
    );
}

/// Parses one statement; each table read `VERSION AS OF n` is renamed to name that
/// version for the catalog.
pub(crate) fn parse(sql: &str) -> Result<DFStatement, Status> {
    let mut statements = DFParser::parse_sql_with_dialect(sql, &TimeTravelDialect)
        .map_err(|error| Status::invalid_argument(error.strip_backtrace()))?;
    let (Some(mut statement), None) = (statements.pop_front(), statements.pop_front()) else {
        return Err(Status::invalid_argument("send one SQL statement at a time"));
    };
    let mut versions = Versions;
    let visited = match &mut statement {
        DFStatement::Statement(inner) => inner.visit(&mut versions),
        DFStatement::Explain(explain) => match explain.statement.as_mut() {
            DFStatement::Statement(inner) => inner.visit(&mut versions),
            _ => ControlFlow::Continue(()),
        },
        _ => ControlFlow::Continue(()),
    };
    match visited {
        ControlFlow::Continue(()) => Ok(statement),
        ControlFlow::Break(refusal) => Err(refusal),
    }
}

/// Turns `t VERSION AS OF n` into a read of the table named [`versioned_name`]`(t, n)`.
struct Versions;

impl VisitorMut for Versions {
    type Break = Status;

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<Status> {
        let TableFactor::Table { name, version, .. } = factor else {
            return ControlFlow::Continue(());
        };
        let wanted = match version.take() {
            None => return ControlFlow::Continue(()),
            Some(TableVersion::VersionAsOf(Expr::Value(value))) => match &value.value {
                Value::Number(number, _) => number.parse::<u64>().ok(),
                _ => None,
            },
            Some(other) => {
                return ControlFlow::Break(Status::invalid_argument(format!(
                    "{name} {other}: tables are read as of a version number, VERSION AS OF <n>"
                )));
            }
        };
        let Some(wanted) = wanted else {
            return ControlFlow::Break(Status::invalid_argument(format!(
                "bad table version for {name}: VERSION AS OF takes a whole number"
            )));
        };
        if let Some(ObjectNamePart::Identifier(table)) = name.0.last_mut() {
            let plain = if table.quote_style.is_some() {
                table.value.clone()
            } else {
                table.value.to_lowercase()
            };
            *table = Ident::with_quote('"', versioned_name(&plain, wanted));
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(sql: &str) -> String {
        parse(sql).unwrap().to_string()
    }

    #[test]
    fn a_version_names_the_table_it_reads() {
        assert_eq!(
            shown("SELECT * FROM enriched.Events VERSION AS OF 3 e JOIN ranked.x USING (id)"),
            "SELECT * FROM enriched.\"events@3\" e JOIN ranked.x USING(id)"
        );
        assert_eq!(
            shown("WITH old AS (SELECT * FROM \"Jobs\" VERSION AS OF 0) SELECT count(*) FROM old"),
            "WITH old AS (SELECT * FROM \"Jobs@0\") SELECT count(*) FROM old"
        );
    }

    #[test]
    fn other_time_travel_is_refused_and_sql_parses_as_the_generic_dialect_does() {
        let refused = parse("SELECT * FROM t TIMESTAMP AS OF '2026-01-01'").unwrap_err();
        assert!(
            refused.message().contains("VERSION AS OF <n>"),
            "{refused:?}"
        );
        assert!(parse("SELECT 1; SELECT 2").is_err());
        for sql in [
            "SELECT \"Id\", [1, 2][1] AS first, {'a': 1} AS s FROM t WHERE x = $1 LIMIT 3",
            "SELECT * EXCLUDE (a) FROM t QUALIFY row_number() OVER (PARTITION BY k) = 1",
            "EXPLAIN SELECT count(*) FILTER (WHERE x > 1) FROM t",
        ] {
            let generic = DFParser::parse_sql_with_dialect(sql, &GenericDialect {}).unwrap();
            assert_eq!(
                parse(sql).unwrap().to_string(),
                generic[0].to_string(),
                "{sql}"
            );
        }
    }
}
