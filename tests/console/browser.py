"""Headless Chromium (Debian's chromium and chromedriver) on the web console, for the
scripts that drive it: logging in, waiting for an element, keeping screenshots."""

import os

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import WebDriverWait


def number(text):
    """A number as the console shows it ("12,345"), or None for an empty cell."""
    return int(text.replace(",", "")) if text.strip() not in ("", "-") else None


class Browser:
    def __init__(self, url, user, shots):
        self.url, self.user, self.shots = url, user, shots
        os.makedirs(shots, exist_ok=True)
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for flag in ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1440,1000"]:
            options.add_argument(flag)
        self.driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"),
                                       options=options)
        # The page re-renders its panels as data arrives: an element found a moment ago
        # may be replaced before it is read, so a stale element means "look again".
        self.wait = WebDriverWait(self.driver, 30,
                                  ignored_exceptions=(StaleElementReferenceException,))

    def shot(self, name):
        self.driver.save_screenshot(os.path.join(self.shots, name + ".png"))

    def visible(self, css):
        return self.wait.until(seen.visibility_of_element_located((By.CSS_SELECTOR, css)))

    def log_in(self, password):
        box = self.visible("#user")
        box.clear()
        box.send_keys(self.user)
        field = self.driver.find_element(By.ID, "password")
        field.clear()
        field.send_keys(password)
        self.driver.find_element(By.ID, "log-in").click()
