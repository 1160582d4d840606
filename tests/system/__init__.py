# pytest system tests of smtptlsd (see conftest.py for the fixtures and after-test checks).
