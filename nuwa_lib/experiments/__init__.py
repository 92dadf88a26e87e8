"""The paper's experiments: the image and video task tables (Tables 1-3, 5, 6), Table 4, the
paper's own numbers, the compute study, the summary and the checks of the notebooks' prose.
"""
