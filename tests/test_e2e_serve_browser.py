"""The page `seqreg-hf serve` answers at GET / in a real browser: headless Chromium (Debian's chromium and
chromium-driver packages, driven by selenium; nothing is downloaded) loads it, a sentence is typed, and the scores it
shows are the API's. A screenshot is saved (SEQREG_HF_SCREENSHOT=PATH keeps a copy, as for docs/img/)."""

import os
import shutil

import pytest

from .test_serving import Server, model_dirs  # noqa: F401  (model_dirs: a module fixture)

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1000,760")
TYPED = ["the happy dog runs", "a sad child cries at night"]


def browser_or_reason():
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(path)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install 'seqreg-hf[dev]')")
    if not missing:
        return None
    reason = (f"no {', '.join(missing)}: install Debian's browser with `apt-get install -y chromium chromium-driver` "
              "(scripts/test.sh does, as root)")
    if os.environ.get("CI"):  # CI installs them: there a missing browser is a failure, never a skip
        pytest.fail(reason)
    return reason


@pytest.fixture
def driver(tmp_path):
    if reason := browser_or_reason():
        pytest.skip(reason)
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium's driver manager never goes online
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    browser = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    yield browser
    browser.quit()


def wait_for(driver, attribute, value):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 60).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute(attribute) == value)


def shown_scores(driver):
    """[{label: (the exact value the page holds, the text it shows)}] per result box, and the std texts."""
    from selenium.webdriver.common.by import By

    boxes = driver.find_elements(By.CSS_SELECTOR, "#results .result")
    scores = [{s.get_attribute("data-label"): (float(s.get_attribute("data-value")), s.text)
               for s in box.find_elements(By.CSS_SELECTOR, ".score")} for box in boxes]
    stds = [[s.text for s in box.find_elements(By.CSS_SELECTOR, ".std")] for box in boxes]
    return scores, stds


def test_the_page_shows_the_apis_scores(driver, model_dirs, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    server = Server(model_dirs["ensemble"]).ready()
    try:
        driver.get(server.url + "/")
        wait_for(driver, "data-ready", "1")
        assert "V, A" in driver.find_element(By.ID, "meta").text
        box = driver.find_element(By.ID, "texts")
        box.clear()
        box.send_keys("\n".join(TYPED))
        driver.find_element(By.ID, "score").click()
        wait_for(driver, "data-scored", "1")
        scores, stds = shown_scores(driver)
        expected = server.predict(TYPED)
        assert len(scores) == len(TYPED) and not any(stds)
        for shown, answer in zip(scores, expected):
            assert {label: value for label, (value, _) in shown.items()} == answer  # the very numbers
            for label, (_, text) in shown.items():
                assert abs(float(text) - answer[label]) <= 0.0005 + 1e-12 and len(text.split(".")[1]) == 3
        driver.find_element(By.ID, "std").click()
        Select(driver.find_element(By.ID, "interval")).select_by_value("0.9")  # the model is calibrated
        driver.find_element(By.ID, "score").click()
        wait_for(driver, "data-scored", "2")
        scores, stds = shown_scores(driver)
        expected = server.predict(TYPED, return_std=True, interval=0.9)
        boxes = driver.find_elements(By.CSS_SELECTOR, "#results .result")
        for box, shown, std_texts, answer in zip(boxes, scores, stds, expected):
            assert {label: value for label, (value, _) in shown.items()} == {k: answer[k] for k in ("V", "A")}
            assert [float(t.strip().lstrip("±")) for t in std_texts] == pytest.approx(
                [answer["V_std"], answer["A_std"]], abs=0.0005 + 1e-12)
            bounds = [(float(i.get_attribute("data-lo")), float(i.get_attribute("data-hi")))
                      for i in box.find_elements(By.CSS_SELECTOR, ".interval")]
            assert bounds == [(answer["V_lo"], answer["V_hi"]), (answer["A_lo"], answer["A_hi"])]
            assert len(box.find_elements(By.CSS_SELECTOR, ".band")) == 2  # drawn as bars
        shot = tmp_path / "serve_page.png"
        assert driver.save_screenshot(str(shot))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5_000
        if copy := os.environ.get("SEQREG_HF_SCREENSHOT"):
            shutil.copyfile(shot, copy)
    finally:
        assert server.stop()[0] == 0
