"""CITATION.cff: the data and method papers and the original projects (validated with cffconvert 2.0.0 when it
was written; this test keeps the references from drifting)."""

from pathlib import Path

import yaml

CFF = Path(__file__).resolve().parents[1] / "CITATION.cff"


def test_citation_cites_the_data_method_and_original_projects():
    cff = yaml.safe_load(CFF.read_text())
    assert cff["cff-version"] == "1.2.0" and cff["type"] == "software" and cff["authors"]
    refs = {ref["title"]: ref for ref in cff["references"]}
    willett = refs[
        "Galaxy Zoo 2: detailed morphological classifications for 304,122 galaxies from the Sloan Digital Sky Survey"
    ]
    assert (willett["doi"], willett["year"], willett["volume"], willett["authors"][0]["family-names"]) == (
        "10.1093/mnras/stt1458",
        2013,
        435,
        "Willett",
    )
    hart = refs[
        "Galaxy Zoo: comparing the demographics of spiral arm number and a new method for correcting redshift bias"
    ]
    assert (hart["doi"], hart["year"], hart["volume"], hart["authors"][0]["family-names"]) == (
        "10.1093/mnras/stw1588",
        2016,
        461,
        "Hart",
    )
    oneformer = refs["OneFormer: One Transformer to Rule Universal Image Segmentation"]
    assert oneformer["year"] == 2023 and oneformer["authors"][0]["family-names"] == "Jain"
    assert "doi" not in oneformer  # no DOI we are sure of: arXiv:2211.06220 instead
    assert refs["Mask galaxy: Morphological segmentation of galaxies"]["doi"] == "10.1016/j.ascom.2020.100420"
    assert refs["mask_galaxy"]["repository-code"] == "https://github.com/hfarias/mask_galaxy"
    assert "Galaxy Segmentation with OneFormer over GalaxyZoo2" in refs
    assert all(ref["authors"] for ref in refs.values())
