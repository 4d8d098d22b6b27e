"""The serve page for a pair model in a real browser (headless Chromium, as test_e2e_serve_browser.py): /info says the
model reads pairs, the page shows a second text area, line i of each area is one pair, and the scores it shows are
the API's for those pairs."""


from seqreg_hf.model_dir import init_model_dir

from .conftest import write_word2vec
from .test_e2e_serve_browser import driver, shown_scores, wait_for  # noqa: F401  (driver: a fixture)
from .test_serving import Server

WORDS = "a the man woman dog cat plays runs guitar sleeps sofa park".split()
FIRST = ["a man plays the guitar", "the dog runs", ""]
SECOND = ["a woman plays", "", "the cat sleeps on the sofa"]


def test_the_page_of_a_pair_model_scores_the_typed_pairs(driver, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By

    write_word2vec(tmp_path / "vectors.txt", WORDS, dim=8, decimals=5)
    init_model_dir(tmp_path / "model", str(tmp_path / "vectors.txt"), embeddings_options={"progress": False},
                   hidden_size=8, pair_encoding="siamese", id2label={0: "score"})
    server = Server(tmp_path / "model").ready()
    try:
        driver.get(server.url + "/")
        wait_for(driver, "data-ready", "1")
        assert "scores pairs (siamese)" in driver.find_element(By.ID, "meta").text
        second = driver.find_element(By.ID, "texts-pair")
        assert second.is_displayed()
        for area, lines in ((driver.find_element(By.ID, "texts"), FIRST), (second, SECOND)):
            area.clear()
            area.send_keys("\n".join(lines))
        driver.find_element(By.ID, "score").click()
        wait_for(driver, "data-scored", "1")
        assert driver.find_element(By.ID, "error").text == ""
        scores, _ = shown_scores(driver)
        expected = server.predict([{"text": a, "text_pair": b} for a, b in zip(FIRST, SECOND)])
        assert [{label: value for label, (value, _) in shown.items()} for shown in scores] == expected
        texts = [t.text for t in driver.find_elements(By.CSS_SELECTOR, "#results .text")]
        assert texts[2] == "(empty) \u2194 the cat sleeps on the sofa"
    finally:
        assert server.stop()[0] == 0
