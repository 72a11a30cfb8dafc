"""``streamlit run app.py`` serves the babysit dashboard (the same as ``babysit ui``)."""
import runpy
from pathlib import Path

runpy.run_path(str(Path(__file__).parent / "babysit" / "ui" / "app.py"), run_name="__main__")
