//! Column lineage of one DataFusion logical plan: for each output column, the upstream
//! columns its values come from (direct) and those that decide which rows there are
//! or what a value is without being it (indirect: joins, filters, groups, sorts,
//! windows, conditions), with the subtypes OpenLineage names.
//!
//! The plan is the unoptimized one the compiler makes: every read is a `TableScan`,
//! wildcards are expanded, and no rewrite has moved a predicate or renamed a column.
//! Values that pass through a struct (`top_k`'s list of `{item, score}`, say) depend on
//! every column any field of the struct was made from: lineage does not follow fields.

use std::collections::{BTreeMap, BTreeSet};

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, Result};
use datafusion::logical_expr::expr::{AggregateFunction, Case, WindowFunction};
use datafusion::logical_expr::utils::grouping_set_to_exprlist;
use datafusion::logical_expr::{
    Distinct, Expr, JoinType, LogicalPlan, Subquery, WindowFunctionDefinition,
};

/// An upstream column: a table (`raw.jobs`) and one of its columns.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Source {
    pub table: String,
    pub column: String,
}

/// How a value is made from a source's value, least to most changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direct {
    Identity,
    Transformation,
    Aggregation,
}

/// How a source decides rows or values without being one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Indirect {
    Join,
    GroupBy,
    Filter,
    Sort,
    Window,
    Conditional,
}

impl Direct {
    /// The name OpenLineage gives it.
    pub fn name(self) -> &'static str {
        match self {
            Direct::Identity => "IDENTITY",
            Direct::Transformation => "TRANSFORMATION",
            Direct::Aggregation => "AGGREGATION",
        }
    }
}

impl Indirect {
    /// The name OpenLineage gives it.
    pub fn name(self) -> &'static str {
        match self {
            Indirect::Join => "JOIN",
            Indirect::GroupBy => "GROUP_BY",
            Indirect::Filter => "FILTER",
            Indirect::Sort => "SORT",
            Indirect::Window => "WINDOW",
            Indirect::Conditional => "CONDITIONAL",
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.table, self.column)
    }
}

/// The lineage of one column.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnLineage {
    pub direct: BTreeMap<Source, Direct>,
    pub indirect: BTreeMap<Source, BTreeSet<Indirect>>,
}

/// Sources that decide a whole table's rows: every column depends on them.
pub type Dataset = BTreeMap<Source, BTreeSet<Indirect>>;

/// A plan's lineage: one entry per output column, in the plan's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanLineage {
    pub columns: Vec<ColumnLineage>,
    pub dataset: Dataset,
}

/// What an expression is to the column being built: where its value goes.
#[derive(Debug, Clone, Copy)]
enum Role {
    Direct(Direct),
    Indirect(Indirect),
}

impl Role {
    /// A value computed from another is at least a transformation of it.
    fn computed(self) -> Role {
        match self {
            Role::Direct(Direct::Identity) => Role::Direct(Direct::Transformation),
            other => other,
        }
    }
}

impl ColumnLineage {
    /// Takes in `from` as `role` says.
    fn absorb(&mut self, from: &ColumnLineage, role: Role) {
        match role {
            Role::Direct(direct) => {
                for (source, was) in &from.direct {
                    let now = self.direct.entry(source.clone()).or_insert(direct);
                    *now = (*now).max(direct).max(*was);
                }
            }
            Role::Indirect(indirect) => {
                for source in from.direct.keys() {
                    self.indirect
                        .entry(source.clone())
                        .or_default()
                        .insert(indirect);
                }
            }
        }
        for (source, kinds) in &from.indirect {
            self.indirect
                .entry(source.clone())
                .or_default()
                .extend(kinds);
        }
    }

    /// Every source, direct or indirect, as `kind` of a dataset.
    fn into_dataset(self, kind: Indirect, dataset: &mut Dataset) {
        for source in self.direct.into_keys() {
            dataset.entry(source).or_default().insert(kind);
        }
        for (source, kinds) in self.indirect {
            dataset.entry(source).or_default().extend(kinds);
        }
    }
}

/// The columns an expression can name: one or more inputs' schemas and lineages.
struct Scope<'a> {
    inputs: Vec<(&'a DFSchema, &'a [ColumnLineage])>,
}

impl<'a> Scope<'a> {
    fn one(schema: &'a DFSchema, columns: &'a [ColumnLineage]) -> Self {
        Scope {
            inputs: vec![(schema, columns)],
        }
    }

    fn column(&self, column: &Column) -> Option<&'a ColumnLineage> {
        self.inputs.iter().find_map(|(schema, columns)| {
            schema
                .maybe_index_of_column(column)
                .and_then(|index| columns.get(index))
        })
    }
}

/// The lineage of `plan`.
pub fn lineage(plan: &LogicalPlan) -> Result<PlanLineage> {
    let width = plan.schema().fields().len();
    match plan {
        LogicalPlan::TableScan(scan) => {
            let table = scan.table_name.to_string();
            let columns = scan
                .projected_schema
                .fields()
                .iter()
                .map(|field| ColumnLineage {
                    direct: BTreeMap::from([(
                        Source {
                            table: table.clone(),
                            column: field.name().clone(),
                        },
                        Direct::Identity,
                    )]),
                    indirect: BTreeMap::new(),
                })
                .collect::<Vec<_>>();
            let mut dataset = Dataset::new();
            let scope = Scope::one(&scan.projected_schema, &columns);
            predicates(&scan.filters, &scope, Indirect::Filter, &mut dataset)?;
            Ok(PlanLineage { columns, dataset })
        }
        LogicalPlan::Projection(projection) => {
            let input = lineage(&projection.input)?;
            let scope = Scope::one(projection.input.schema(), &input.columns);
            let columns = projection
                .expr
                .iter()
                .map(|expr| evaluate(expr, &scope, Role::Direct(Direct::Identity)))
                .collect::<Result<_>>()?;
            Ok(PlanLineage {
                columns,
                dataset: input.dataset,
            })
        }
        LogicalPlan::Filter(filter) => {
            let mut input = lineage(&filter.input)?;
            let scope = Scope::one(filter.input.schema(), &input.columns);
            let mut dataset = std::mem::take(&mut input.dataset);
            predicates(
                std::slice::from_ref(&filter.predicate),
                &scope,
                Indirect::Filter,
                &mut dataset,
            )?;
            input.dataset = dataset;
            Ok(input)
        }
        LogicalPlan::Join(join) => {
            let left = lineage(&join.left)?;
            let right = lineage(&join.right)?;
            let mut dataset = left.dataset.clone();
            merge(&mut dataset, &right.dataset);
            let both = Scope {
                inputs: vec![
                    (join.left.schema(), &left.columns),
                    (join.right.schema(), &right.columns),
                ],
            };
            for (l, r) in &join.on {
                predicates(&[l.clone(), r.clone()], &both, Indirect::Join, &mut dataset)?;
            }
            if let Some(filter) = &join.filter {
                predicates(
                    std::slice::from_ref(filter),
                    &both,
                    Indirect::Join,
                    &mut dataset,
                )?;
            }
            let mut columns = match join.join_type {
                JoinType::LeftSemi | JoinType::LeftAnti | JoinType::LeftMark => {
                    left.columns.clone()
                }
                JoinType::RightSemi | JoinType::RightAnti | JoinType::RightMark => {
                    right.columns.clone()
                }
                JoinType::Inner | JoinType::Left | JoinType::Right | JoinType::Full => {
                    [left.columns.clone(), right.columns.clone()].concat()
                }
            };
            columns.resize(width, ColumnLineage::default());
            Ok(PlanLineage { columns, dataset })
        }
        LogicalPlan::Aggregate(aggregate) => {
            let input = lineage(&aggregate.input)?;
            let scope = Scope::one(aggregate.input.schema(), &input.columns);
            let mut dataset = input.dataset.clone();
            let keys = grouping_set_to_exprlist(&aggregate.group_expr)?;
            let mut columns = Vec::with_capacity(width);
            for key in keys {
                let column = evaluate(key, &scope, Role::Direct(Direct::Identity))?;
                column.clone().into_dataset(Indirect::GroupBy, &mut dataset);
                columns.push(column);
            }
            for expr in &aggregate.aggr_expr {
                columns.push(evaluate(expr, &scope, Role::Direct(Direct::Aggregation))?);
            }
            // A grouping set's `__grouping_id` says which keys a row groups by.
            columns.resize(width, ColumnLineage::default());
            Ok(PlanLineage { columns, dataset })
        }
        LogicalPlan::Window(window) => {
            let input = lineage(&window.input)?;
            let scope = Scope::one(window.input.schema(), &input.columns);
            let mut columns = input.columns.clone();
            for expr in &window.window_expr {
                columns.push(evaluate(expr, &scope, Role::Direct(Direct::Identity))?);
            }
            Ok(PlanLineage {
                columns,
                dataset: input.dataset,
            })
        }
        LogicalPlan::Sort(sort) => {
            let mut input = lineage(&sort.input)?;
            let scope = Scope::one(sort.input.schema(), &input.columns);
            let keys: Vec<Expr> = sort.expr.iter().map(|key| key.expr.clone()).collect();
            let mut dataset = std::mem::take(&mut input.dataset);
            predicates(&keys, &scope, Indirect::Sort, &mut dataset)?;
            input.dataset = dataset;
            Ok(input)
        }
        LogicalPlan::Distinct(Distinct::All(input)) => {
            let mut lineage = lineage(input)?;
            for column in lineage.columns.clone() {
                column.into_dataset(Indirect::GroupBy, &mut lineage.dataset);
            }
            Ok(lineage)
        }
        LogicalPlan::Distinct(Distinct::On(on)) => {
            let input = lineage(&on.input)?;
            let scope = Scope::one(on.input.schema(), &input.columns);
            let mut dataset = input.dataset.clone();
            predicates(&on.on_expr, &scope, Indirect::GroupBy, &mut dataset)?;
            if let Some(sort) = &on.sort_expr {
                let keys: Vec<Expr> = sort.iter().map(|key| key.expr.clone()).collect();
                predicates(&keys, &scope, Indirect::Sort, &mut dataset)?;
            }
            let columns = on
                .select_expr
                .iter()
                .map(|expr| evaluate(expr, &scope, Role::Direct(Direct::Identity)))
                .collect::<Result<_>>()?;
            Ok(PlanLineage { columns, dataset })
        }
        LogicalPlan::Union(union) => {
            let mut all = PlanLineage {
                columns: vec![ColumnLineage::default(); width],
                dataset: Dataset::new(),
            };
            for input in &union.inputs {
                let input = lineage(input)?;
                for (column, from) in all.columns.iter_mut().zip(&input.columns) {
                    column.absorb(from, Role::Direct(Direct::Identity));
                }
                merge(&mut all.dataset, &input.dataset);
            }
            Ok(all)
        }
        LogicalPlan::Unnest(unnest) => {
            let input = lineage(&unnest.input)?;
            let unnested: BTreeSet<usize> = unnest
                .list_type_columns
                .iter()
                .map(|(index, _)| *index)
                .chain(unnest.struct_type_columns.iter().copied())
                .collect();
            let columns = unnest
                .dependency_indices
                .iter()
                .map(|index| {
                    let from = &input.columns[*index];
                    if unnested.contains(index) {
                        let mut column = ColumnLineage::default();
                        column.absorb(from, Role::Direct(Direct::Transformation));
                        column
                    } else {
                        from.clone()
                    }
                })
                .collect();
            Ok(PlanLineage {
                columns,
                dataset: input.dataset,
            })
        }
        LogicalPlan::SubqueryAlias(alias) => lineage(&alias.input),
        LogicalPlan::Subquery(subquery) => lineage(&subquery.subquery),
        LogicalPlan::Limit(limit) => lineage(&limit.input),
        LogicalPlan::Repartition(repartition) => lineage(&repartition.input),
        LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => Ok(PlanLineage {
            columns: vec![ColumnLineage::default(); width],
            dataset: Dataset::new(),
        }),
        other => {
            // A node lineage does not know: every column from everything it reads.
            let mut everything = ColumnLineage::default();
            let mut dataset = Dataset::new();
            for input in other.inputs() {
                let input = lineage(input)?;
                for column in &input.columns {
                    everything.absorb(column, Role::Direct(Direct::Transformation));
                }
                merge(&mut dataset, &input.dataset);
            }
            Ok(PlanLineage {
                columns: vec![everything; width],
                dataset,
            })
        }
    }
}

fn merge(into: &mut Dataset, from: &Dataset) {
    for (source, kinds) in from {
        into.entry(source.clone()).or_default().extend(kinds);
    }
}

/// Adds the sources of `exprs` (predicates, keys) to `dataset` as `kind`.
fn predicates(
    exprs: &[Expr],
    scope: &Scope<'_>,
    kind: Indirect,
    dataset: &mut Dataset,
) -> Result<()> {
    for expr in exprs {
        evaluate(expr, scope, Role::Indirect(kind))?.into_dataset(kind, dataset);
    }
    Ok(())
}

/// The lineage of an expression's value, its sources playing `role`.
fn evaluate(expr: &Expr, scope: &Scope<'_>, role: Role) -> Result<ColumnLineage> {
    let mut column = ColumnLineage::default();
    walk(expr, scope, role, &mut column)?;
    Ok(column)
}

fn walk(expr: &Expr, scope: &Scope<'_>, role: Role, out: &mut ColumnLineage) -> Result<()> {
    match expr {
        Expr::Column(column) => {
            if let Some(from) = scope.column(column) {
                out.absorb(from, role);
            }
        }
        Expr::Alias(alias) => walk(&alias.expr, scope, role, out)?,
        Expr::Case(Case {
            expr,
            when_then_expr,
            else_expr,
        }) => {
            let condition = Role::Indirect(Indirect::Conditional);
            if let Some(expr) = expr {
                walk(expr, scope, condition, out)?;
            }
            for (when, then) in when_then_expr {
                walk(when, scope, condition, out)?;
                walk(then, scope, role.computed(), out)?;
            }
            if let Some(otherwise) = else_expr {
                walk(otherwise, scope, role.computed(), out)?;
            }
        }
        Expr::AggregateFunction(AggregateFunction { params, .. }) => {
            let value = match role {
                Role::Direct(_) => Role::Direct(Direct::Aggregation),
                indirect => indirect,
            };
            for arg in &params.args {
                walk(arg, scope, value, out)?;
            }
            if let Some(filter) = &params.filter {
                walk(filter, scope, Role::Indirect(Indirect::Filter), out)?;
            }
            for key in &params.order_by {
                walk(&key.expr, scope, Role::Indirect(Indirect::Sort), out)?;
            }
        }
        Expr::WindowFunction(window) => {
            let WindowFunction { fun, params } = window.as_ref();
            let value = match (role, fun) {
                (Role::Direct(_), WindowFunctionDefinition::AggregateUDF(_)) => {
                    Role::Direct(Direct::Aggregation)
                }
                (role, _) => role.computed(),
            };
            for arg in &params.args {
                walk(arg, scope, value, out)?;
            }
            for key in &params.partition_by {
                walk(key, scope, Role::Indirect(Indirect::Window), out)?;
            }
            for key in &params.order_by {
                walk(&key.expr, scope, Role::Indirect(Indirect::Window), out)?;
            }
            if let Some(filter) = &params.filter {
                walk(filter, scope, Role::Indirect(Indirect::Filter), out)?;
            }
        }
        Expr::ScalarSubquery(subquery) => {
            // Its references to the outer query are not followed.
            let inner = lineage(&subquery.subquery)?;
            if let Some(first) = inner.columns.first() {
                out.absorb(first, role.computed());
            }
            absorb_dataset(out, &inner.dataset);
        }
        Expr::Exists(exists) => {
            subquery_as_filter(&exists.subquery, out)?;
        }
        Expr::InSubquery(in_subquery) => {
            walk(
                &in_subquery.expr,
                scope,
                Role::Indirect(Indirect::Filter),
                out,
            )?;
            subquery_as_filter(&in_subquery.subquery, out)?;
        }
        other => {
            let role = role.computed();
            other.apply_children(|child| {
                walk(child, scope, role, out)?;
                Ok(TreeNodeRecursion::Continue)
            })?;
        }
    }
    Ok(())
}

/// Everything a subquery in a predicate reads decides rows: a filter.
fn subquery_as_filter(subquery: &Subquery, out: &mut ColumnLineage) -> Result<()> {
    let inner = lineage(&subquery.subquery)?;
    for column in &inner.columns {
        out.absorb(column, Role::Indirect(Indirect::Filter));
    }
    absorb_dataset(out, &inner.dataset);
    Ok(())
}

fn absorb_dataset(out: &mut ColumnLineage, dataset: &Dataset) {
    for (source, kinds) in dataset {
        out.indirect
            .entry(source.clone())
            .or_default()
            .extend(kinds);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::empty::EmptyTable;
    use datafusion::prelude::SessionContext;

    use super::*;

    async fn plan(sql: &str) -> LogicalPlan {
        let ctx = SessionContext::new();
        for (name, columns) in [("a", ["k", "x", "y"]), ("b", ["k", "z", "w"])] {
            let fields: Vec<Field> = columns
                .iter()
                .map(|column| Field::new(*column, DataType::Int64, true))
                .collect();
            ctx.register_table(
                name,
                Arc::new(EmptyTable::new(Arc::new(Schema::new(fields)))),
            )
            .unwrap();
        }
        ctx.state().create_logical_plan(sql).await.unwrap()
    }

    fn source(table: &str, column: &str) -> Source {
        Source {
            table: table.to_owned(),
            column: column.to_owned(),
        }
    }

    #[tokio::test]
    async fn case_branches_are_values_and_conditions_are_indirect() {
        let lineage =
            lineage(&plan("SELECT CASE WHEN y > 0 THEN x ELSE 0 END AS v FROM a").await).unwrap();
        let v = &lineage.columns[0];
        assert_eq!(
            v.direct,
            BTreeMap::from([(source("a", "x"), Direct::Transformation)])
        );
        assert_eq!(
            v.indirect,
            BTreeMap::from([(source("a", "y"), BTreeSet::from([Indirect::Conditional]))])
        );
    }

    #[tokio::test]
    async fn unions_join_both_sides_and_distinct_groups_by_every_column() {
        let lineage =
            lineage(&plan("SELECT DISTINCT x FROM a UNION ALL SELECT z FROM b").await).unwrap();
        assert_eq!(
            lineage.columns[0].direct,
            BTreeMap::from([
                (source("a", "x"), Direct::Identity),
                (source("b", "z"), Direct::Identity)
            ])
        );
        assert_eq!(
            lineage.dataset,
            BTreeMap::from([(source("a", "x"), BTreeSet::from([Indirect::GroupBy]))])
        );
    }

    #[tokio::test]
    async fn subqueries_in_predicates_filter_and_using_joins() {
        let lineage = lineage(
            &plan(
                "SELECT a.x, sum(b.w) AS s FROM a JOIN b USING (k) \
                 WHERE a.y IN (SELECT z FROM b WHERE w > 1) GROUP BY a.x ORDER BY s",
            )
            .await,
        )
        .unwrap();
        assert_eq!(
            lineage.columns[1].direct,
            BTreeMap::from([(source("b", "w"), Direct::Aggregation)])
        );
        let kinds = |table: &str, column: &str| lineage.dataset[&source(table, column)].clone();
        assert_eq!(kinds("a", "k"), BTreeSet::from([Indirect::Join]));
        assert_eq!(kinds("b", "k"), BTreeSet::from([Indirect::Join]));
        assert_eq!(kinds("a", "y"), BTreeSet::from([Indirect::Filter]));
        assert_eq!(kinds("b", "z"), BTreeSet::from([Indirect::Filter]));
        assert_eq!(
            kinds("b", "w"),
            BTreeSet::from([Indirect::Filter, Indirect::Sort])
        );
        assert_eq!(kinds("a", "x"), BTreeSet::from([Indirect::GroupBy]));
    }
}
