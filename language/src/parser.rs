//! A small recursive-descent layer over sqlparser for pipeline statements.
//!
//! Statements are split on `;`, landing sources go to DataFusion's own parser, and
//! `CREATE TABLE` is parsed here with queries and expressions delegated to sqlparser.
//! Every position is kept relative to its whole file.

use std::ops::ControlFlow;

use datafusion::sql::parser::{DFParser, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, FunctionArg, FunctionArgExpr, Ident, ObjectName, ObjectNamePart, Query,
    Spanned, TableFactor, Visit, VisitMut, Visitor, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{IsOptional, Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Location, Span, Token, TokenWithSpan, Tokenizer};

use crate::ast::{
    DELETED_SUFFIX, Expectation, Format, Layer, OnViolation, Pipeline, Policy, PolicyKind,
    QUARANTINE_SUFFIX, REJECTS_SUFFIX, SourceTable, Statement, TableDef, TableName, TableRef,
    WriteMode,
};
use crate::diagnostic::{Diagnostic, did_you_mean};
use crate::error::{LanguageError, Result};
use crate::source::{FileId, SourceFile, SourceSpan, Sources};

/// Parses every statement of every file, reporting all problems at once.
pub fn parse(sources: &Sources) -> Result<Pipeline> {
    let mut statements = Vec::new();
    let mut policies = Vec::new();
    let mut problems = Vec::new();
    for (id, file) in sources.iter() {
        let parser = FileParser { id, file };
        match parser.statements() {
            Ok(parsed) => {
                for outcome in parsed {
                    match outcome {
                        Ok(Declared::Statement(statement)) => statements.push(statement),
                        Ok(Declared::Policy(policy)) => policies.push(policy),
                        Err(problem) => problems.push(problem),
                    }
                }
            }
            Err(problem) => problems.push(problem),
        }
    }
    problems.extend(check_policies(&statements, &policies, sources));
    if problems.is_empty() {
        Ok(Pipeline {
            statements,
            policies,
        })
    } else {
        Err(LanguageError::Invalid(problems))
    }
}

/// Identifiers compare as DataFusion compares them: unquoted ones case-insensitively.
pub fn normalize_ident(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

/// What one statement of a file declares.
enum Declared {
    Statement(Statement),
    Policy(Policy),
}

/// Each policy names a table the pipeline builds, a mask masks one column once, and
/// no two policies of a table share a name.
fn check_policies(
    statements: &[Statement],
    policies: &[Policy],
    sources: &Sources,
) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    for (position, policy) in policies.iter().enumerate() {
        let built = statements
            .iter()
            .any(|statement| matches!(statement, Statement::Table(t) if t.name == policy.table));
        if !built {
            let names: Vec<String> = statements
                .iter()
                .filter(|statement| matches!(statement, Statement::Table(_)))
                .map(|statement| statement.name().to_string())
                .collect();
            let hint = did_you_mean(&policy.table.to_string(), names.iter().map(String::as_str))
                .map(|close| format!("did you mean {close}? "))
                .unwrap_or_default();
            problems.push(
                Diagnostic::error(
                    format!(
                        "{} {} is on {}, which this pipeline does not build",
                        policy.kind.keyword(),
                        policy.name,
                        policy.table
                    ),
                    Some(policy.table_span),
                )
                .with_help(format!(
                    "{hint}a policy is declared in the pipeline that builds its table"
                )),
            );
        }
        let earlier = policies[..position].iter().find(|other| {
            other.table == policy.table
                && (other.name == policy.name
                    || matches!((&other.kind, &policy.kind),
                        (PolicyKind::Mask { column: a }, PolicyKind::Mask { column: b }) if a == b))
        });
        if let Some(earlier) = earlier {
            let what = match &policy.kind {
                PolicyKind::Mask { column } if earlier.name != policy.name => {
                    format!("a second mask on {}.{column}", policy.table)
                }
                _ => format!("a second policy named {} on {}", policy.name, policy.table),
            };
            problems.push(
                Diagnostic::error(what, Some(policy.span)).with_help(format!(
                    "the first is {} at {}",
                    earlier.name,
                    earlier.span.location(sources)
                )),
            );
        }
    }
    problems
}

struct FileParser<'a> {
    id: FileId,
    file: &'a SourceFile,
}

type Parsed<T> = std::result::Result<T, Diagnostic>;

impl FileParser<'_> {
    fn span(&self, span: Span) -> SourceSpan {
        SourceSpan::new(self.id, span)
    }

    /// Tokenizes the file and parses each `;`-separated statement on its own.
    fn statements(&self) -> Parsed<Vec<Parsed<Declared>>> {
        let tokens = Tokenizer::new(&GenericDialect {}, &self.file.text)
            .tokenize_with_location()
            .map_err(|error| {
                let at = error.location;
                Diagnostic::error(error.message, Some(self.span(Span::new(at, at))))
            })?;
        let mut statements = Vec::new();
        for chunk in tokens.split(|token| token.token == Token::SemiColon) {
            let chunk: Vec<TokenWithSpan> = chunk
                .iter()
                .filter(|token| !matches!(token.token, Token::Whitespace(_) | Token::EOF))
                .cloned()
                .collect();
            if let (Some(first), Some(last)) = (chunk.first(), chunk.last()) {
                let span = Span::new(first.span.start, last.span.end);
                statements.push(self.statement(chunk.clone(), span));
            }
        }
        Ok(statements)
    }

    fn statement(&self, tokens: Vec<TokenWithSpan>, span: Span) -> Parsed<Declared> {
        let words: Vec<String> = tokens
            .iter()
            .take(4)
            .map(|token| match &token.token {
                Token::Word(word) => word.value.to_ascii_uppercase(),
                other => other.to_string(),
            })
            .collect();
        let word = |index: usize| words.get(index).map(String::as_str);
        let is_external = word(0) == Some("CREATE")
            && (word(1) == Some("EXTERNAL")
                || word(2) == Some("EXTERNAL")
                || word(3) == Some("EXTERNAL"));
        if is_external {
            self.source_table(span).map(Declared::Statement)
        } else if word(0) == Some("CREATE") && word(1) == Some("TABLE") {
            self.table(tokens, span).map(Declared::Statement)
        } else if word(0) == Some("CREATE")
            && (word(1) == Some("MASK") || (word(1) == Some("ROW") && word(2) == Some("FILTER")))
        {
            self.policy(tokens, span).map(Declared::Policy)
        } else {
            let found = tokens
                .first()
                .map_or(String::new(), |token| token.token.to_string());
            Err(Diagnostic::error(
                format!(
                    "expected CREATE EXTERNAL TABLE, CREATE TABLE, CREATE MASK or CREATE ROW FILTER, found {found}"
                ),
                Some(self.span(tokens[0].span)),
            )
            .with_help("a pipeline declares tables; run other statements with `strata query`"))
        }
    }

    /// Parses a landing source with DataFusion's parser, on the masked file so positions hold.
    fn source_table(&self, span: Span) -> Parsed<Statement> {
        let masked = self.file.masked(span);
        let mut parsed = DFParser::parse_sql_with_dialect(&masked, &GenericDialect {})
            .map_err(|error| self.engine_parse_error(&error.to_string(), span))?;
        let Some(DFStatement::CreateExternalTable(definition)) = parsed.pop_front() else {
            return Err(Diagnostic::error(
                "expected one CREATE EXTERNAL TABLE statement",
                Some(self.span(span)),
            ));
        };
        let name_span = self.span(definition.name.span());
        let name = self.table_name(&definition.name, name_span, &[Layer::Landing])?;
        Ok(Statement::Source(SourceTable {
            name,
            name_span,
            definition,
            span: self.span(span),
        }))
    }

    /// Turns a parser message ("… at Line: 3, Column: 7") into a diagnostic at that place.
    fn engine_parse_error(&self, message: &str, fallback: Span) -> Diagnostic {
        let message = message
            .trim_start_matches("SQL error: ")
            .trim_start_matches("ParserError(\"")
            .trim_end_matches("\")")
            .trim_start_matches("sql parser error: ");
        let (text, location) = match message.rfind(" at Line: ") {
            Some(index) => {
                let numbers: Vec<u64> = message[index..]
                    .split(|ch: char| !ch.is_ascii_digit())
                    .filter_map(|part| part.parse().ok())
                    .collect();
                match numbers.as_slice() {
                    [line, column, ..] => {
                        let at = Location::new(*line, *column);
                        (&message[..index], Span::new(at, at))
                    }
                    _ => (message, fallback),
                }
            }
            None => (message, fallback),
        };
        Diagnostic::error(text.to_owned(), Some(self.span(location)))
    }

    fn parser_error(&self, error: ParserError, fallback: Span) -> Diagnostic {
        self.engine_parse_error(&error.to_string(), fallback)
    }

    /// Checks a `<layer>.<name>` table name against the layers a statement may declare.
    fn table_name(
        &self,
        name: &ObjectName,
        span: SourceSpan,
        layers: &[Layer],
    ) -> Parsed<TableName> {
        let parts: Vec<String> = name
            .0
            .iter()
            .filter_map(|part| part.as_ident().map(normalize_ident))
            .collect();
        let allowed = layers
            .iter()
            .map(|layer| layer.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        match parts.as_slice() {
            [_, table] if table.ends_with(QUARANTINE_SUFFIX) => Err(Diagnostic::error(
                format!("table name {name} ends with {QUARANTINE_SUFFIX}, which is reserved"),
                Some(span),
            )
            .with_help(format!(
                "tables named <table>{QUARANTINE_SUFFIX} hold the rows a table's QUARANTINE expectations set aside"
            ))),
            [_, table] if table.ends_with(REJECTS_SUFFIX) => Err(Diagnostic::error(
                format!("table name {name} ends with {REJECTS_SUFFIX}, which is reserved"),
                Some(span),
            )
            .with_help(format!(
                "tables named raw.<table>{REJECTS_SUFFIX} hold the landing rows a raw table could not parse"
            ))),
            [_, table] if table.ends_with(DELETED_SUFFIX) => Err(Diagnostic::error(
                format!("table name {name} ends with {DELETED_SUFFIX}, which is reserved"),
                Some(span),
            )
            .with_help(format!(
                "tables named <table>{DELETED_SUFFIX} remember the keys a MERGE KEY … DELETE WHEN table deleted"
            ))),
            [layer, table] => match Layer::parse(layer) {
                Some(layer) if layers.contains(&layer) => Ok(TableName {
                    layer,
                    name: table.clone(),
                }),
                Some(layer) => Err(Diagnostic::error(
                    format!("{name} is in layer {layer}, but this statement declares a table of layer {allowed}"),
                    Some(span),
                )
                .with_help(if layer == Layer::Landing {
                    "landing tables are declared with CREATE EXTERNAL TABLE"
                } else {
                    "raw, enriched and ranked tables are built with CREATE TABLE … AS SELECT"
                })),
                None => Err(Diagnostic::error(
                    format!("unknown layer {layer} in {name}"),
                    Some(span),
                )
                .with_help(format!("the layer is the schema name: one of {allowed}"))),
            },
            _ => Err(Diagnostic::error(
                format!("table name {name} must be <layer>.<name>"),
                Some(span),
            )
            .with_help(format!("the layer is one of {allowed}"))),
        }
    }

    fn table(&self, tokens: Vec<TokenWithSpan>, span: Span) -> Parsed<Statement> {
        let dialect = GenericDialect {};
        let mut parser = Parser::new(&dialect).with_tokens_with_locations(tokens);
        let fail = |error: ParserError| self.parser_error(error, span);
        parser.expect_keyword(Keyword::CREATE).map_err(fail)?;
        parser.expect_keyword(Keyword::TABLE).map_err(fail)?;
        let object_name = parser.parse_object_name(false).map_err(fail)?;
        let name_span = self.span(object_name.span());
        let name = self.table_name(
            &object_name,
            name_span,
            &[Layer::Raw, Layer::Enriched, Layer::Ranked],
        )?;

        let mut expectations = Vec::new();
        if parser.consume_token(&Token::LParen) {
            loop {
                expectations.push(self.expectation(&mut parser, span)?);
                if !parser.consume_token(&Token::Comma) {
                    break;
                }
            }
            parser.expect_token(&Token::RParen).map_err(fail)?;
        }

        let mut partitioned_by = None;
        let mut format = None;
        let mut mode = None;
        loop {
            let clause = parser.peek_token();
            if parser.parse_keywords(&[Keyword::PARTITIONED, Keyword::BY]) {
                let columns = parser
                    .parse_parenthesized_column_list(IsOptional::Mandatory, false)
                    .map_err(fail)?;
                self.once(
                    &mut partitioned_by,
                    columns.iter().map(normalize_ident).collect(),
                    "PARTITIONED BY",
                    &clause,
                )?;
            } else if parser.parse_keywords(&[Keyword::STORED, Keyword::AS]) {
                let word = parser.next_token();
                let parsed = match &word.token {
                    Token::Word(w) => Format::parse(&w.value),
                    _ => None,
                };
                let Some(parsed) = parsed else {
                    return Err(Diagnostic::error(
                        format!(
                            "expected a storage format (AVRO, DELTA or PARQUET), found {}",
                            word.token
                        ),
                        Some(self.span(word.span)),
                    ));
                };
                self.once(&mut format, parsed, "STORED AS", &clause)?;
            } else if word_is(&clause, "WRITE") {
                parser.next_token();
                let parsed = self.write_mode(&mut parser, span)?;
                self.once(&mut mode, parsed, "WRITE", &clause)?;
            } else {
                break;
            }
        }

        let before_as = parser.peek_token();
        if !parser.parse_keyword(Keyword::AS) {
            return Err(Diagnostic::error(
                format!(
                    "expected AS SELECT …, or one of (expectations), PARTITIONED BY, STORED AS, WRITE; found {}",
                    describe(&before_as.token)
                ),
                Some(self.span(before_as.span)),
            ));
        }
        let query_start = parser.peek_token().span.start;
        let mut query = parser.parse_query().map_err(fail)?;
        let streams = self.unwrap_streams(&mut query)?;
        self.expect_end(&parser)?;
        let query_span = self.span(Span::new(query_start, span.end));
        let reads = self.reads(&query, &streams);
        let format = format.unwrap_or_else(|| name.layer.format().unwrap_or(Format::Delta));
        // Raw tables only ever grow by new landing files.
        let mode = mode.unwrap_or(if name.layer == Layer::Raw {
            WriteMode::Append
        } else {
            WriteMode::Replace
        });
        Ok(Statement::Table(TableDef {
            name,
            name_span,
            expectations,
            partitioned_by: partitioned_by.unwrap_or_default(),
            format,
            mode,
            query,
            query_span,
            reads,
            span: self.span(span),
        }))
    }

    /// `CREATE MASK name ON table (column) AS expr` or
    /// `CREATE ROW FILTER name ON table AS predicate`.
    fn policy(&self, tokens: Vec<TokenWithSpan>, span: Span) -> Parsed<Policy> {
        let tokens = without_empty_parentheses_after(tokens, "CURRENT_USER");
        let dialect = GenericDialect {};
        let mut parser = Parser::new(&dialect).with_tokens_with_locations(tokens);
        let fail = |error: ParserError| self.parser_error(error, span);
        parser.expect_keyword(Keyword::CREATE).map_err(fail)?;
        let is_mask = word_is(&parser.peek_token(), "MASK");
        if is_mask {
            self.expect_word(&mut parser, "MASK")?;
        } else {
            self.expect_word(&mut parser, "ROW")?;
            self.expect_word(&mut parser, "FILTER")?;
        }
        let name = normalize_ident(&parser.parse_identifier().map_err(fail)?);
        parser.expect_keyword(Keyword::ON).map_err(fail)?;
        let object_name = parser.parse_object_name(false).map_err(fail)?;
        let table_span = self.span(object_name.span());
        let table = self.table_name(
            &object_name,
            table_span,
            &[Layer::Raw, Layer::Enriched, Layer::Ranked],
        )?;
        let kind = if is_mask {
            parser.expect_token(&Token::LParen).map_err(fail)?;
            let column = normalize_ident(&parser.parse_identifier().map_err(fail)?);
            parser.expect_token(&Token::RParen).map_err(fail)?;
            PolicyKind::Mask { column }
        } else {
            PolicyKind::RowFilter
        };
        let before_as = parser.peek_token();
        if !parser.parse_keyword(Keyword::AS) {
            return Err(Diagnostic::error(
                format!(
                    "expected AS followed by the {}, found {}",
                    if is_mask { "masked value" } else { "predicate" },
                    describe(&before_as.token)
                ),
                Some(self.span(before_as.span)),
            ));
        }
        let expr = parser.parse_expr().map_err(fail)?;
        self.expect_end(&parser)?;
        Ok(Policy {
            name,
            table,
            table_span,
            kind,
            expr,
            span: self.span(span),
        })
    }

    /// Keeps the first occurrence of a clause and rejects a second one.
    fn once<T>(
        &self,
        slot: &mut Option<T>,
        value: T,
        clause: &str,
        at: &TokenWithSpan,
    ) -> Parsed<()> {
        if slot.is_some() {
            return Err(Diagnostic::error(
                format!("{clause} is given twice"),
                Some(self.span(at.span)),
            ));
        }
        *slot = Some(value);
        Ok(())
    }

    /// `CONSTRAINT name EXPECT (predicate) [ON VIOLATION QUARANTINE | DROP ROW | FAIL]`.
    fn expectation(&self, parser: &mut Parser, span: Span) -> Parsed<Expectation> {
        let fail = |error: ParserError| self.parser_error(error, span);
        let start = parser.peek_token();
        if !parser.parse_keyword(Keyword::CONSTRAINT) {
            return Err(Diagnostic::error(
                format!(
                    "expected CONSTRAINT <name> EXPECT (…), found {}",
                    describe(&start.token)
                ),
                Some(self.span(start.span)),
            )
            .with_help("column definitions are not needed: the columns come from the query"));
        }
        let name = normalize_ident(&parser.parse_identifier().map_err(fail)?);
        self.expect_word(parser, "EXPECT")?;
        parser.expect_token(&Token::LParen).map_err(fail)?;
        let predicate = parser.parse_expr().map_err(fail)?;
        let close = parser.expect_token(&Token::RParen).map_err(fail)?;
        let mut end = close.span.end;
        let on_violation = if parser.parse_keyword(Keyword::ON) {
            self.expect_word(parser, "VIOLATION")?;
            let action = parser.next_token();
            end = action.span.end;
            if word_is(&action, "QUARANTINE") {
                OnViolation::Quarantine
            } else if word_is(&action, "FAIL") {
                OnViolation::Fail
            } else if word_is(&action, "DROP") {
                let row = parser.next_token();
                if !word_is(&row, "ROW") {
                    return Err(Diagnostic::error(
                        format!("expected DROP ROW, found DROP {}", row.token),
                        Some(self.span(row.span)),
                    ));
                }
                end = row.span.end;
                OnViolation::DropRow
            } else {
                return Err(Diagnostic::error(
                    format!(
                        "expected QUARANTINE, DROP ROW or FAIL after ON VIOLATION, found {}",
                        describe(&action.token)
                    ),
                    Some(self.span(action.span)),
                ));
            }
        } else {
            OnViolation::Fail
        };
        Ok(Expectation {
            name,
            predicate,
            on_violation,
            span: self.span(Span::new(start.span.start, end)),
        })
    }

    /// `WRITE REPLACE | APPEND | MERGE KEY (…) [SEQUENCE BY col] [DELETE WHEN condition]
    /// | SCD2 KEY (…) SEQUENCE BY col`.
    fn write_mode(&self, parser: &mut Parser, span: Span) -> Parsed<WriteMode> {
        let fail = |error: ParserError| self.parser_error(error, span);
        let mode = parser.next_token();
        let key = |parser: &mut Parser| -> Parsed<Vec<String>> {
            self.expect_word(parser, "KEY")?;
            Ok(parser
                .parse_parenthesized_column_list(IsOptional::Mandatory, false)
                .map_err(fail)?
                .iter()
                .map(normalize_ident)
                .collect())
        };
        if word_is(&mode, "REPLACE") {
            Ok(WriteMode::Replace)
        } else if word_is(&mode, "APPEND") {
            Ok(WriteMode::Append)
        } else if word_is(&mode, "MERGE") {
            let key = key(parser)?;
            let sequence_by = if word_is(&parser.peek_token(), "SEQUENCE") {
                parser.next_token();
                parser.expect_keyword(Keyword::BY).map_err(fail)?;
                Some(normalize_ident(&parser.parse_identifier().map_err(fail)?))
            } else {
                None
            };
            let delete_when = if word_is(&parser.peek_token(), "DELETE") {
                parser.next_token();
                self.expect_word(parser, "WHEN")?;
                Some(parser.parse_expr().map_err(fail)?.to_string())
            } else {
                None
            };
            Ok(WriteMode::Merge {
                key,
                sequence_by,
                delete_when,
            })
        } else if word_is(&mode, "SCD2") {
            let key = key(parser)?;
            self.expect_word(parser, "SEQUENCE")?;
            parser.expect_keyword(Keyword::BY).map_err(fail)?;
            let sequence_by = normalize_ident(&parser.parse_identifier().map_err(fail)?);
            Ok(WriteMode::Scd2 { key, sequence_by })
        } else {
            Err(Diagnostic::error(
                format!(
                    "expected REPLACE, APPEND, MERGE KEY (…) [SEQUENCE BY …] or SCD2 KEY (…) SEQUENCE BY … after WRITE, found {}",
                    describe(&mode.token)
                ),
                Some(self.span(mode.span)),
            ))
        }
    }

    /// The statement must end where its last clause did.
    fn expect_end(&self, parser: &Parser) -> Parsed<()> {
        let trailing = parser.peek_token();
        if trailing.token == Token::EOF {
            return Ok(());
        }
        Err(Diagnostic::error(
            format!(
                "expected the end of the statement (;), found {}",
                trailing.token
            ),
            Some(self.span(trailing.span)),
        ))
    }

    fn expect_word(&self, parser: &mut Parser, word: &str) -> Parsed<()> {
        let token = parser.next_token();
        if word_is(&token, word) {
            Ok(())
        } else {
            Err(Diagnostic::error(
                format!("expected {word}, found {}", describe(&token.token)),
                Some(self.span(token.span)),
            ))
        }
    }

    /// Rewrites every `STREAM(<table>)` and `CHANGES(<table>)` in the query's `FROM`
    /// clauses to the table itself, and returns where each such name was written (and
    /// whether it reads changes), so [`Self::reads`] can mark it.
    fn unwrap_streams(&self, query: &mut Query) -> Parsed<Vec<(SourceSpan, bool)>> {
        let mut streams = Streams::default();
        if let ControlFlow::Break((span, changes)) = VisitMut::visit(query, &mut streams) {
            let (word, example) = if changes {
                ("CHANGES", "CHANGES(enriched.orders)")
            } else {
                ("STREAM", "STREAM(raw.events)")
            };
            return Err(Diagnostic::error(
                format!("{word} takes one table name, as in {example}"),
                Some(self.span(span)),
            ));
        }
        Ok(streams
            .names
            .into_iter()
            .map(|(span, changes)| (self.span(span), changes))
            .collect())
    }

    /// The tables a query reads, leaving out the names its own `WITH` clauses define;
    /// those written at `streams` are read as streams.
    fn reads(&self, query: &Query, streams: &[(SourceSpan, bool)]) -> Vec<TableRef> {
        let mut collector = Relations::default();
        let _ = Visit::visit(query, &mut collector);
        collector
            .relations
            .into_iter()
            .filter(|relation| {
                !(relation.0.len() == 1
                    && relation.0[0]
                        .as_ident()
                        .is_some_and(|ident| collector.ctes.contains(&normalize_ident(ident))))
            })
            .map(|relation| {
                let span = self.span(relation.span());
                let stream = streams.iter().find(|(at, _)| *at == span);
                TableRef {
                    parts: relation
                        .0
                        .iter()
                        .filter_map(|part| part.as_ident().map(normalize_ident))
                        .collect(),
                    stream: stream.is_some(),
                    changes: stream.is_some_and(|(_, changes)| *changes),
                    span,
                }
            })
            .collect()
    }
}

/// `current_user()` as `CURRENT_USER`: SQL writes the function without parentheses,
/// and people write it with them, as `current_role()`.
fn without_empty_parentheses_after(tokens: Vec<TokenWithSpan>, word: &str) -> Vec<TokenWithSpan> {
    let mut kept: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    let mut index = 0;
    while index < tokens.len() {
        let empty_call = kept.last().is_some_and(|last| word_is(last, word))
            && tokens[index].token == Token::LParen
            && tokens
                .get(index + 1)
                .is_some_and(|next| next.token == Token::RParen);
        if empty_call {
            index += 2;
        } else {
            kept.push(tokens[index].clone());
            index += 1;
        }
    }
    kept
}

fn word_is(token: &TokenWithSpan, word: &str) -> bool {
    matches!(&token.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

fn describe(token: &Token) -> String {
    match token {
        Token::EOF => "the end of the statement".to_owned(),
        other => other.to_string(),
    }
}

/// Finds `STREAM(<table>)` and `CHANGES(<table>)` table factors and replaces each with
/// its table, keeping its alias; breaks at one whose argument is not a table name.
#[derive(Default)]
struct Streams {
    /// Where each stream's table was named, and whether it reads changes.
    names: Vec<(Span, bool)>,
}

impl VisitorMut for Streams {
    type Break = (Span, bool);

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<(Span, bool)> {
        let TableFactor::Table { name, args, .. } = factor else {
            return ControlFlow::Continue(());
        };
        let called = |word: &str| {
            matches!(name.0.as_slice(),
                [ObjectNamePart::Identifier(ident)] if ident.quote_style.is_none()
                    && ident.value.eq_ignore_ascii_case(word))
        };
        let changes = called("changes");
        let Some(call) = args.as_ref().filter(|_| changes || called("stream")) else {
            return ControlFlow::Continue(());
        };
        let table = match call.args.as_slice() {
            [FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::CompoundIdentifier(parts)))] => {
                ObjectName::from(parts.clone())
            }
            [FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::Identifier(part)))] => {
                ObjectName::from(vec![part.clone()])
            }
            _ => return ControlFlow::Break((name.span(), changes)),
        };
        self.names.push((table.span(), changes));
        *name = table;
        *args = None;
        ControlFlow::Continue(())
    }
}

/// Collects relation names and CTE names anywhere in a query.
#[derive(Default)]
struct Relations {
    relations: Vec<ObjectName>,
    ctes: Vec<String>,
}

impl Visitor for Relations {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            self.ctes.extend(
                with.cte_tables
                    .iter()
                    .map(|cte| normalize_ident(&cte.alias.name)),
            );
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        self.relations.push(relation.clone());
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_one(text: &str) -> Result<Pipeline> {
        let mut sources = Sources::default();
        sources.add("pipeline.sql", text);
        parse(&sources)
    }

    fn problems(text: &str) -> Vec<Diagnostic> {
        match parse_one(text) {
            Err(LanguageError::Invalid(problems)) => problems,
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn a_table_keeps_its_clauses_and_what_it_reads() {
        let pipeline = parse_one(
            "CREATE EXTERNAL TABLE landing.jobs STORED AS CSV LOCATION 'landing/jobs/';\n\
             CREATE TABLE enriched.Jobs (CONSTRAINT has_id EXPECT (id IS NOT NULL) ON VIOLATION DROP ROW)\n\
               PARTITIONED BY (day) WRITE MERGE KEY (\"Id\")\n\
             AS WITH recent AS (SELECT * FROM raw.jobs) SELECT * FROM recent JOIN raw.cities USING (city);",
        )
        .unwrap();
        let [Statement::Source(source), Statement::Table(table)] = &pipeline.statements[..] else {
            panic!("{pipeline:?}");
        };
        assert_eq!(source.name.to_string(), "landing.jobs");
        assert_eq!(table.name.to_string(), "enriched.jobs");
        assert_eq!(table.format, Format::Delta);
        assert_eq!(table.partitioned_by, ["day"]);
        assert_eq!(
            table.mode,
            WriteMode::Merge {
                key: vec!["Id".into()],
                sequence_by: None,
                delete_when: None,
            }
        );
        assert_eq!(table.expectations[0].on_violation, OnViolation::DropRow);
        let reads: Vec<String> = table.reads.iter().map(ToString::to_string).collect();
        assert_eq!(
            reads,
            ["raw.jobs", "raw.cities"],
            "the CTE is not a table read"
        );
    }

    #[test]
    fn a_stream_read_is_the_table_itself_marked_as_a_stream() {
        let pipeline = parse_one(
            "CREATE TABLE enriched.readings WRITE MERGE KEY (id) SEQUENCE BY version\n\
             AS SELECT r.*, s.site FROM STREAM(raw.Readings) AS r JOIN raw.sensors s USING (sensor)",
        )
        .unwrap();
        let Statement::Table(table) = &pipeline.statements[0] else {
            panic!()
        };
        assert_eq!(
            table.mode,
            WriteMode::Merge {
                key: vec!["id".into()],
                sequence_by: Some("version".into()),
                delete_when: None,
            }
        );
        let reads: Vec<(String, bool)> = table
            .reads
            .iter()
            .map(|read| (read.to_string(), read.stream))
            .collect();
        assert_eq!(
            reads,
            [("raw.readings".into(), true), ("raw.sensors".into(), false)]
        );
        let stream = table.stream().unwrap().span.span;
        assert_eq!((stream.start.line, stream.start.column), (2, 35));
        let query = table.query.to_string();
        assert!(
            query.contains("FROM raw.Readings AS r JOIN"),
            "STREAM( ) is gone from the query the engine plans: {query}"
        );
    }

    #[test]
    fn stream_takes_a_table_name() {
        let found =
            problems("CREATE TABLE enriched.a WRITE APPEND AS SELECT * FROM STREAM('raw.a')");
        assert!(
            found[0].message.contains("STREAM takes one table name"),
            "{}",
            found[0].message
        );
    }

    #[test]
    fn raw_tables_append_and_are_avro_by_default() {
        let pipeline = parse_one("CREATE TABLE raw.jobs AS SELECT * FROM landing.jobs").unwrap();
        let Statement::Table(table) = &pipeline.statements[0] else {
            panic!()
        };
        assert_eq!(
            (table.format, &table.mode),
            (Format::Avro, &WriteMode::Append)
        );
    }

    #[test]
    fn every_problem_is_reported_at_its_place() {
        let found = problems(
            "CREATE TABLE enriched.a WRITE UPSERT AS SELECT 1;\n\
             CREATE TABLE nowhere.b AS SELECT 1;\n\
             DROP TABLE enriched.c;",
        );
        let at: Vec<(u64, u64)> = found
            .iter()
            .map(|problem| {
                let span = problem.span.unwrap().span;
                (span.start.line, span.start.column)
            })
            .collect();
        assert_eq!(at, [(1, 31), (2, 14), (3, 1)], "{found:?}");
        assert!(
            found[0].message.contains("found UPSERT"),
            "{}",
            found[0].message
        );
        assert!(found[1].message.contains("unknown layer nowhere"));
    }

    #[test]
    fn a_changes_read_is_a_stream_of_the_tables_change_rows() {
        let pipeline = parse_one(
            "CREATE TABLE ranked.order_log WRITE APPEND\n\
             AS SELECT id, _change_type FROM changes(enriched.orders) AS c",
        )
        .unwrap();
        let Statement::Table(table) = &pipeline.statements[0] else {
            panic!()
        };
        let read = table.stream().unwrap();
        assert_eq!(read.to_string(), "enriched.orders");
        assert!(read.stream && read.changes);
        let found = problems("CREATE TABLE ranked.log WRITE APPEND AS SELECT 1 FROM CHANGES(1)");
        assert!(
            found[0].message.contains("CHANGES takes one table name"),
            "{}",
            found[0].message
        );
    }

    #[test]
    fn a_merge_may_delete_keys_when_a_condition_holds() {
        let pipeline = parse_one(
            "CREATE TABLE enriched.orders WRITE MERGE KEY (id) SEQUENCE BY lsn DELETE WHEN op = 'd'\n\
             AS SELECT id, lsn, op FROM raw.orders",
        )
        .unwrap();
        let Statement::Table(table) = &pipeline.statements[0] else {
            panic!()
        };
        assert_eq!(
            table.mode,
            WriteMode::Merge {
                key: vec!["id".into()],
                sequence_by: Some("lsn".into()),
                delete_when: Some("op = 'd'".into()),
            }
        );
        let found = problems("CREATE TABLE enriched.orders__deleted AS SELECT 1");
        assert!(
            found[0].message.contains("reserved"),
            "{}",
            found[0].message
        );
        let broken = problems(
            "CREATE TABLE enriched.orders WRITE MERGE KEY (id) DELETE WHEN AS SELECT 1 AS id",
        );
        assert!(!broken.is_empty());
    }

    #[test]
    fn masks_and_row_filters_are_policies_on_built_tables() {
        let pipeline = parse_one(
            "CREATE TABLE enriched.people AS SELECT 1 AS id, 'a@b.c' AS email;\n\
             CREATE MASK email_mask ON enriched.people (Email) AS \
               CASE WHEN current_role() = 'admin' THEN email ELSE mask_email(email) END;\n\
             CREATE ROW FILTER own ON enriched.people AS id IN (SELECT id FROM enriched.people);",
        )
        .unwrap();
        assert_eq!(pipeline.statements.len(), 1);
        let [mask, filter] = pipeline.policies.as_slice() else {
            panic!("{:?}", pipeline.policies);
        };
        assert_eq!(mask.name, "email_mask");
        assert_eq!(
            mask.kind,
            PolicyKind::Mask {
                column: "email".into()
            }
        );
        assert!(
            mask.expr
                .to_string()
                .starts_with("CASE WHEN current_role()")
        );
        assert_eq!(filter.kind, PolicyKind::RowFilter);
        assert_eq!(filter.table.to_string(), "enriched.people");

        let problems = problems(
            "CREATE TABLE enriched.people AS SELECT 1 AS id, 'a@b.c' AS email;\n\
             CREATE MASK m ON enriched.peple (email) AS NULL;\n\
             CREATE MASK a ON enriched.people (email) AS NULL;\n\
             CREATE MASK b ON enriched.people (email) AS NULL;\n\
             CREATE ROW FILTER f ON landing.people AS true;\n\
             CREATE MASK c ON enriched.people email AS NULL;",
        );
        let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
        assert!(
            messages
                .iter()
                .any(|m| m.contains("enriched.peple, which this pipeline does not build")),
            "{messages:?}"
        );
        assert!(
            problems.iter().any(|p| p
                .help
                .as_deref()
                .is_some_and(|h| h.contains("did you mean enriched.people"))),
            "{problems:?}"
        );
        assert!(
            messages.contains(&"a second mask on enriched.people.email"),
            "{messages:?}"
        );
        assert!(
            messages.iter().any(|m| m.contains("layer landing")),
            "{messages:?}"
        );
        assert!(
            messages.iter().any(|m| m.contains("Expected: (")),
            "{messages:?}"
        );
    }

    #[test]
    fn the_quarantine_suffix_is_reserved() {
        let found = problems("CREATE TABLE enriched.events__quarantine AS SELECT 1");
        assert!(
            found[0].message.contains("reserved"),
            "{}",
            found[0].message
        );
        let name = TableName {
            layer: Layer::Enriched,
            name: "events".into(),
        };
        assert_eq!(name.quarantine().to_string(), "enriched.events__quarantine");
        assert!(name.quarantine().is_quarantine() && !name.is_quarantine());
    }
}
