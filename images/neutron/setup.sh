# Run once at build time as root (images/service.Dockerfile): the console scripts the chart starts exist.
command -v neutron-db-manage
python -c 'import psycopg2, pymysql'
