"""Opens a run of a Kafka raw table in the web console and checks its Kafka panel
against the run report: each partition's offsets read, messages left and their age.

Usage: kafka_lag.py URL USER PASSWORD REPORT.json SHOTS
"""

import json
import sys

from selenium.webdriver.common.by import By

from browser import Browser, number

url, user, password, report_path, shots = sys.argv[1:6]
report = json.load(open(report_path))
browser = Browser(url, user, shots)
try:
    browser.driver.get(url)
    browser.log_in(password)
    browser.visible(f'tr[data-run="{report["run_id"]}"]')
    browser.driver.get(f"{url}#/runs/{report['run_id']}")
    browser.visible("#kafka-lag")
    checked = 0
    for table in report["tables"]:
        topic = table.get("topic")
        if not topic:
            continue
        behind = {b["partition"]: b for b in topic.get("behind", [])}
        for partition, start, end in topic["partitions"]:
            row = browser.driver.find_element(
                By.CSS_SELECTOR, f'tr[data-partition="{table["table"]}/{partition}"]')
            assert f"{start:,}–{end:,}" in row.text, row.text
            left = behind.get(partition, {"messages": 0})
            shown = row.find_element(By.CSS_SELECTOR, '[data-field="messages"]').text
            assert number(shown) == left["messages"], (partition, shown, left)
            age = row.find_element(By.CSS_SELECTOR, '[data-field="lag"]').text
            if "lag_ms" in left:
                shown_seconds = float(age.removesuffix(" s"))
                assert abs(shown_seconds - left["lag_ms"] / 1000) <= 0.051, (partition, age, left)
            checked += 1
    assert checked, "no partition read in the report"
    browser.shot("kafka-lag")
    print(f"kafka lag checked: {checked} partitions")
finally:
    browser.driver.quit()
