"""Drives the web console in headless Chromium (Debian's chromium and chromedriver).

Logs in (a wrong password first), opens the run and checks every table's row against
the run report, follows a table to its page and a column to its lineage graph and one
step upstream, opens the DAG and the cluster page, and logs out; keeps a screenshot of
each step in SHOTS.

Usage: drive.py URL USER PASSWORD REPORT.json LINEAGE.json SHOTS
"""

import json
import sys

from selenium.webdriver.common.by import By

from browser import Browser, number

url, user, password, report_path, lineage_path, shots = sys.argv[1:7]
report = json.load(open(report_path))
lineage = json.load(open(lineage_path))
browser = Browser(url, user, shots)
driver, wait, shot, visible, log_in = (
    browser.driver, browser.wait, browser.shot, browser.visible, browser.log_in)


def sources_shown():
    return {node.get_attribute("data-source")
            for node in driver.find_elements(By.CSS_SELECTOR, "#lineage-graph [data-source]")}


try:
    driver.get(url)
    log_in("not the password")
    refused = visible("#login-error")
    assert refused.text == "wrong user or password", refused.text
    shot("01-login-refused")

    log_in(password)
    run_id = report["run_id"]
    row = visible(f'tr[data-run="{run_id}"]')
    assert "succeeded" in row.text, row.text
    shot("02-runs")

    row.find_element(By.TAG_NAME, "a").click()
    visible("#run-tables")
    assert driver.find_element(By.ID, "run-id").text == run_id
    for table in report["tables"]:
        shown = driver.find_element(By.CSS_SELECTOR, f'tr[data-table-row="{table["table"]}"]')
        assert shown.find_element(By.CSS_SELECTOR, '[data-field="status"]').text == table["status"]
        for field in ["rows_read", "rows_written", "rows_dropped", "rows_quarantined", "rows_rejected"]:
            cell = shown.find_element(By.CSS_SELECTOR, f'[data-field="{field}"]')
            assert number(cell.text) == table.get(field, 0), (table["table"], field, cell.text)
    shot("03-run")

    ranked = "ranked.candidates_per_job"
    driver.find_element(By.CSS_SELECTOR, f'tr[data-table-row="{ranked}"] a').click()
    visible("#schema")
    assert driver.find_element(By.ID, "table-name").text == ranked
    written = next(t for t in report["tables"] if t["table"] == ranked)["rows_written"]
    assert number(driver.find_element(By.ID, "table-rows").text) == written
    assert driver.find_elements(By.CSS_SELECTOR, "#history tr")[1:], "no history"
    shot("04-table")

    driver.find_element(By.CSS_SELECTOR, 'a[data-lineage="pos"]').click()
    visible("#lineage-graph")
    assert driver.find_element(By.ID, "lineage-of").text == f"{ranked}.pos"
    pos = lineage[ranked]["columns"]["pos"]
    expected = set(pos["direct"]) | set(pos["indirect"]) | set(lineage[ranked]["dataset"])
    assert sources_shown() == expected, (sources_shown() ^ expected)
    shot("05-lineage")

    driver.find_element(By.CSS_SELECTOR, '[data-source="enriched.jobs.job_id"]').click()
    wait.until(lambda d: d.find_element(By.ID, "lineage-of").text == "enriched.jobs.job_id")
    assert "raw.jobs.job_id" in sources_shown(), sources_shown()
    shot("06-lineage-upstream")

    driver.get(url + "#/pipeline")
    visible("#dag")
    nodes = driver.find_elements(By.CSS_SELECTOR, "#dag [data-node]")
    assert len(nodes) == len(lineage) + 4, len(nodes)  # the built tables and 4 landing sources
    shot("07-dag")

    driver.get(url + "#/cluster")
    visible("#cluster-embedded, #executors")
    shot("08-cluster")

    driver.find_element(By.ID, "log-out").click()
    visible("#login")
    driver.get(url + "#/runs")
    visible("#login")
    print(f"console checked: run {run_id}, {len(report['tables'])} tables, {len(nodes)} DAG nodes")
finally:
    driver.quit()
