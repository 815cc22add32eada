//! What the server says about itself: the full `GetSqlInfo` list that JDBC reads at
//! connect time, the XDBC type list, and the empty primary-key result.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_flight::error::FlightError;
use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{
    Nullable, Searchable, SqlInfo, SqlNullOrdering, SqlOuterJoinsSupportLevel,
    SqlSupportedCaseSensitivity, SqlSupportedResultSetType, SqlSupportedTransaction,
    SqlSupportsConvert, XdbcDataType, XdbcDatetimeSubcode,
};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::execution::SessionState;
use datafusion::sql::sqlparser::keywords::ALL_KEYWORDS;

/// Every `SqlInfo` the Flight SQL spec defines, answered for a read-only DataFusion server.
pub(crate) fn sql_info(state: &SessionState) -> Result<SqlInfoData, FlightError> {
    let functions = |section: &str| -> Vec<String> {
        let mut names: Vec<String> = state
            .scalar_functions()
            .values()
            .filter(|udf| {
                udf.documentation()
                    .is_some_and(|doc| doc.doc_section.label == section)
            })
            .map(|udf| udf.name().to_uppercase())
            .collect();
        names.sort();
        names.dedup();
        names
    };
    let bits = |values: &[i32]| values.iter().fold(0, |mask, value| mask | (1 << value));
    let mut info = SqlInfoDataBuilder::new();
    info.append(SqlInfo::FlightSqlServerName, "Strata");
    info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    info.append(SqlInfo::FlightSqlServerArrowVersion, "59");
    info.append(SqlInfo::FlightSqlServerReadOnly, true);
    info.append(SqlInfo::FlightSqlServerSql, true);
    info.append(SqlInfo::FlightSqlServerSubstrait, false);
    info.append(SqlInfo::FlightSqlServerSubstraitMinVersion, "");
    info.append(SqlInfo::FlightSqlServerSubstraitMaxVersion, "");
    info.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::None as i32,
    );
    info.append(SqlInfo::FlightSqlServerCancel, false);
    info.append(SqlInfo::FlightSqlServerBulkIngestion, false);
    info.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, false);
    info.append(SqlInfo::FlightSqlServerStatementTimeout, 0_i32);
    info.append(SqlInfo::FlightSqlServerTransactionTimeout, 0_i32);
    info.append(SqlInfo::SqlDdlCatalog, false);
    info.append(SqlInfo::SqlDdlSchema, false);
    info.append(SqlInfo::SqlDdlTable, false);
    info.append(
        SqlInfo::SqlIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32,
    );
    info.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    info.append(
        SqlInfo::SqlQuotedIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityCaseInsensitive as i32,
    );
    info.append(SqlInfo::SqlAllTablesAreSelectable, true);
    info.append(
        SqlInfo::SqlNullOrdering,
        SqlNullOrdering::SqlNullsSortedHigh as i32,
    );
    let keywords: Vec<String> = ALL_KEYWORDS.iter().map(|k| (*k).to_owned()).collect();
    info.append(SqlInfo::SqlKeywords, keywords);
    info.append(SqlInfo::SqlNumericFunctions, functions("Math Functions"));
    info.append(SqlInfo::SqlStringFunctions, functions("String Functions"));
    info.append(SqlInfo::SqlSystemFunctions, functions("Other Functions"));
    info.append(
        SqlInfo::SqlDatetimeFunctions,
        functions("Time and Date Functions"),
    );
    info.append(SqlInfo::SqlSearchStringEscape, "\\");
    info.append(SqlInfo::SqlExtraNameCharacters, "");
    info.append(SqlInfo::SqlSupportsColumnAliasing, true);
    info.append(SqlInfo::SqlNullPlusNullIsNull, true);
    let numeric = [
        SqlSupportsConvert::SqlConvertBigint,
        SqlSupportsConvert::SqlConvertInteger,
        SqlSupportsConvert::SqlConvertSmallint,
        SqlSupportsConvert::SqlConvertTinyint,
        SqlSupportsConvert::SqlConvertFloat,
        SqlSupportsConvert::SqlConvertReal,
        SqlSupportsConvert::SqlConvertDecimal,
        SqlSupportsConvert::SqlConvertVarchar,
    ];
    let convert: BTreeMap<i32, Vec<i32>> = numeric
        .iter()
        .map(|from| (*from as i32, numeric.iter().map(|to| *to as i32).collect()))
        .collect();
    info.append(SqlInfo::SqlSupportsConvert, convert);
    info.append(SqlInfo::SqlSupportsTableCorrelationNames, true);
    info.append(SqlInfo::SqlSupportsDifferentTableCorrelationNames, false);
    info.append(SqlInfo::SqlSupportsExpressionsInOrderBy, true);
    info.append(SqlInfo::SqlSupportsOrderByUnrelated, true);
    // Both GROUP BY flavours: columns not selected, and columns beyond the select list.
    info.append(SqlInfo::SqlSupportedGroupBy, bits(&[0, 1]));
    info.append(SqlInfo::SqlSupportsLikeEscapeClause, true);
    info.append(SqlInfo::SqlSupportsNonNullableColumns, true);
    // Minimum and core SQL grammar.
    info.append(SqlInfo::SqlSupportedGrammar, bits(&[0, 1]));
    // ANSI-92 entry level SQL.
    info.append(SqlInfo::SqlAnsi92SupportedLevel, bits(&[0]));
    info.append(SqlInfo::SqlSupportsIntegrityEnhancementFacility, false);
    info.append(
        SqlInfo::SqlOuterJoinsSupportLevel,
        SqlOuterJoinsSupportLevel::SqlFullOuterJoins as i32,
    );
    info.append(SqlInfo::SqlSchemaTerm, "schema");
    info.append(SqlInfo::SqlProcedureTerm, "procedure");
    info.append(SqlInfo::SqlCatalogTerm, "catalog");
    info.append(SqlInfo::SqlCatalogAtStart, true);
    info.append(SqlInfo::SqlSchemasSupportedActions, 0_i32);
    info.append(SqlInfo::SqlCatalogsSupportedActions, 0_i32);
    info.append(SqlInfo::SqlSupportedPositionedCommands, 0_i32);
    info.append(SqlInfo::SqlSelectForUpdateSupported, false);
    info.append(SqlInfo::SqlStoredProceduresSupported, false);
    // Subqueries in comparisons, EXISTS, IN and quantified comparisons.
    info.append(SqlInfo::SqlSupportedSubqueries, bits(&[0, 1, 2, 3]));
    info.append(SqlInfo::SqlCorrelatedSubqueriesSupported, true);
    // UNION and UNION ALL.
    info.append(SqlInfo::SqlSupportedUnions, bits(&[0, 1]));
    for limit in [
        SqlInfo::SqlMaxBinaryLiteralLength,
        SqlInfo::SqlMaxCharLiteralLength,
        SqlInfo::SqlMaxColumnNameLength,
        SqlInfo::SqlMaxColumnsInGroupBy,
        SqlInfo::SqlMaxColumnsInIndex,
        SqlInfo::SqlMaxColumnsInOrderBy,
        SqlInfo::SqlMaxColumnsInSelect,
        SqlInfo::SqlMaxColumnsInTable,
        SqlInfo::SqlMaxConnections,
        SqlInfo::SqlMaxCursorNameLength,
        SqlInfo::SqlMaxIndexLength,
        SqlInfo::SqlDbSchemaNameLength,
        SqlInfo::SqlMaxProcedureNameLength,
        SqlInfo::SqlMaxCatalogNameLength,
        SqlInfo::SqlMaxRowSize,
        SqlInfo::SqlMaxStatementLength,
        SqlInfo::SqlMaxStatements,
        SqlInfo::SqlMaxTableNameLength,
        SqlInfo::SqlMaxTablesInSelect,
        SqlInfo::SqlMaxUsernameLength,
    ] {
        // Zero means no known limit.
        info.append(limit, 0_i64);
    }
    info.append(SqlInfo::SqlMaxRowSizeIncludesBlobs, false);
    info.append(SqlInfo::SqlDefaultTransactionIsolation, 0_i32);
    info.append(SqlInfo::SqlTransactionsSupported, false);
    info.append(SqlInfo::SqlSupportedTransactionsIsolationLevels, 0_i32);
    info.append(SqlInfo::SqlDataDefinitionCausesTransactionCommit, false);
    info.append(SqlInfo::SqlDataDefinitionsInTransactionsIgnored, false);
    info.append(
        SqlInfo::SqlSupportedResultSetTypes,
        bits(&[SqlSupportedResultSetType::SqlResultSetTypeForwardOnly as i32]),
    );
    // Read-only result sets, for forward-only ones; scrolling is not offered.
    info.append(
        SqlInfo::SqlSupportedConcurrenciesForResultSetUnspecified,
        0_i32,
    );
    info.append(
        SqlInfo::SqlSupportedConcurrenciesForResultSetForwardOnly,
        bits(&[1]),
    );
    info.append(
        SqlInfo::SqlSupportedConcurrenciesForResultSetScrollSensitive,
        0_i32,
    );
    info.append(
        SqlInfo::SqlSupportedConcurrenciesForResultSetScrollInsensitive,
        0_i32,
    );
    info.append(SqlInfo::SqlBatchUpdatesSupported, false);
    info.append(SqlInfo::SqlSavepointsSupported, false);
    info.append(SqlInfo::SqlNamedParametersSupported, false);
    info.append(SqlInfo::SqlLocatorsUpdateCopy, false);
    info.append(SqlInfo::SqlStoredFunctionsUsingCallSyntaxSupported, false);
    info.build()
}

/// The SQL types DataFusion reads and writes, for `GetXdbcTypeInfo`.
pub(crate) fn xdbc_types() -> Result<XdbcTypeInfoData, FlightError> {
    let mut types = XdbcTypeInfoDataBuilder::new();
    let mut add =
        |name: &str, data_type: XdbcDataType, column_size: Option<i32>, radix: Option<i32>| {
            let quoted = matches!(data_type, XdbcDataType::XdbcVarchar);
            types.append(XdbcTypeInfo {
                type_name: name.to_owned(),
                data_type,
                column_size,
                literal_prefix: quoted.then(|| "'".to_owned()),
                literal_suffix: quoted.then(|| "'".to_owned()),
                create_params: None,
                nullable: Nullable::NullabilityNullable,
                case_sensitive: quoted,
                searchable: Searchable::Full,
                unsigned_attribute: radix.map(|_| false),
                fixed_prec_scale: false,
                auto_increment: radix.map(|_| false),
                local_type_name: Some(name.to_owned()),
                minimum_scale: None,
                maximum_scale: None,
                sql_data_type: data_type,
                datetime_subcode: match data_type {
                    // The spec's XDBC_SUBCODE_DATE shares value 1 with YEAR.
                    XdbcDataType::XdbcDate => Some(XdbcDatetimeSubcode::XdbcSubcodeYear),
                    XdbcDataType::XdbcTimestamp => Some(XdbcDatetimeSubcode::XdbcSubcodeTimestamp),
                    _ => None,
                },
                num_prec_radix: radix,
                interval_precision: None,
            });
        };
    add("BOOLEAN", XdbcDataType::XdbcBit, Some(1), None);
    add("TINYINT", XdbcDataType::XdbcTinyint, Some(8), Some(2));
    add("SMALLINT", XdbcDataType::XdbcSmallint, Some(16), Some(2));
    add("INTEGER", XdbcDataType::XdbcInteger, Some(32), Some(2));
    add("BIGINT", XdbcDataType::XdbcBigint, Some(64), Some(2));
    add("FLOAT", XdbcDataType::XdbcFloat, Some(24), Some(2));
    add("DOUBLE", XdbcDataType::XdbcDouble, Some(53), Some(2));
    add("DECIMAL", XdbcDataType::XdbcDecimal, Some(38), Some(10));
    add("VARCHAR", XdbcDataType::XdbcVarchar, None, None);
    add("BINARY", XdbcDataType::XdbcBinary, None, None);
    add("DATE", XdbcDataType::XdbcDate, Some(10), None);
    add("TIMESTAMP", XdbcDataType::XdbcTimestamp, Some(26), None);
    types.build()
}

/// `GetPrimaryKeys`: published tables declare no keys, so the result is empty.
pub(crate) fn primary_keys() -> RecordBatch {
    RecordBatch::new_empty(primary_keys_schema())
}

fn primary_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}
